//! The metrics exposition: every family present, no per-key labels, and
//! promtool accepts it.

use super::spec;
use crate::harness::{TestConfig, TestGateway, Upstream, get_with_key};

#[tokio::test]
async fn metrics_pass_promtool() {
    let up = Upstream::start("a").await;
    let cfg = TestConfig::pg()
        .await
        .upstream("a", &[up.addr], |_| {})
        .route("r", "/", "a", |_| {});
    let k = cfg
        .keys()
        .await
        .create(spec("o", &[]), &"t".into())
        .await
        .expect("create");
    let gw: TestGateway = cfg.start().await;
    for key in [k.secret.expose(), "kg_bad"] {
        get_with_key(&gw, key).await;
    }
    let text = gw.metrics().await;
    for name in [
        "keygate_requests_total",
        "keygate_request_duration_seconds",
        "keygate_auth_duration_seconds",
        "keygate_keys_loaded",
        "keygate_key_sync_age_seconds",
        "keygate_ratelimit_backend_errors_total",
        "keygate_ratelimit_degraded",
        "keygate_usage_events_total",
        "keygate_usage_queue_depth",
        "keygate_build_info",
    ] {
        assert!(text.contains(&format!("# TYPE {name} ")), "missing {name}");
    }
    assert!(
        !text.contains(k.secret.expose()) && !text.contains(&k.key.id.to_string()),
        "no per-key labels"
    );
    let promtool = crate::harness::procs::find("promtool", &[])
        .expect("promtool not found: install Debian's `prometheus` package");
    let mut child = std::process::Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool");
    use std::io::Write;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("promtool output");
    assert!(
        out.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    gw.stop().await;
}
