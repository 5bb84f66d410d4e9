//! Live reload. The built binary under continuous load takes 10 reloads
//! (SIGHUP and `keygate reload`, alternating two configurations that change
//! routes, upstreams and route caps): no request fails and every response has
//! a usage row. An invalid file changes nothing and is reported with every
//! problem; restart-only settings are named; requests in flight finish on the
//! configuration they started with.

use std::path::Path;
use std::time::Duration;

use keygate::config::FileConfig;
use keygate::config::file::{RouteSection, UpstreamSection};
use keygate::gateway::ReloadError;

use super::{Load, wait_usage_rows};
use crate::harness::binary::{self, Process};
use crate::harness::gateway::HASH_SECRET;
use crate::harness::{StoreKind, TestConfig, TestGateway, Upstream, eventually, metric_value};

const ENV: &[(&str, &str)] = &[("KEYGATE_HASH_SECRET", HASH_SECRET)];

/// Config `a` or `b`: `/api` (keyed) to upstream `a` or `b` with a route cap
/// of 100000 or 200000 a minute; `b` adds a public `/extra`.
fn variant(base: &FileConfig, up: &Upstream, which: &str) -> FileConfig {
    let mut f = base.clone();
    let cap = if which == "a" { 100_000 } else { 200_000 };
    f.upstream = vec![UpstreamSection {
        name: which.into(),
        servers: vec![up.addr.to_string()],
        ..Default::default()
    }];
    f.route = vec![RouteSection {
        name: "api".into(),
        path_prefix: Some("/api".into()),
        upstream: which.into(),
        rate_limits: [("minute".to_string(), cap)].into(),
        ..Default::default()
    }];
    if which == "b" {
        f.route.push(RouteSection {
            name: "extra".into(),
            path_prefix: Some("/extra".into()),
            upstream: "b".into(),
            auth: Some(keygate::config::AuthMode::Public.into()),
            ..Default::default()
        });
    }
    f
}

/// A reload metric of the binary, read from its admin listener.
async fn reloads(p: &Process, result: &str) -> f64 {
    let text = reqwest::get(format!("http://{}/metrics", p.admin))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("body");
    let series = format!("keygate_config_reloads_total{{result=\"{result}\"}}");
    metric_value(&text, &series).unwrap_or(0.0)
}

/// Writes `file`, asks for a reload (SIGHUP, or `keygate reload` when `cli`)
/// and waits until the metric counts it.
async fn reload(p: &Process, path: &Path, file: &FileConfig, cli: bool, result: &str) {
    let before = reloads(p, result).await;
    binary::write_config(path, file);
    if cli {
        let path = path.to_owned();
        let (code, out, err) =
            tokio::task::spawn_blocking(move || binary::run(&path, &["reload"], ENV))
                .await
                .expect("join");
        assert_eq!(code, 0, "keygate reload: {out}{err}");
        assert!(out.contains("sent SIGHUP"), "{out}");
    } else {
        p.signal(libc::SIGHUP);
    }
    let counted = eventually(Duration::from_secs(5), || async {
        reloads(p, result).await > before
    })
    .await;
    assert!(counted.is_some(), "the reload ({result}) was not counted");
}

#[tokio::test]
async fn ten_reloads_under_load_fail_no_request_and_lose_no_usage_row() {
    let (up_a, up_b) = (Upstream::start("a").await, Upstream::start("b").await);
    let dir = tempfile::tempdir().expect("tmp");
    let db = format!("sqlite://{}", dir.path().join("keygate.db").display());
    let mut base = binary::serving_config(&db, up_a.addr);
    base.gateway.pid_file = Some(dir.path().join("keygate.pid").display().to_string());
    base.gateway.shutdown_grace = Some("5s".into());
    base.usage.flush_interval = Some("100ms".into());
    let (a, b) = (variant(&base, &up_a, "a"), variant(&base, &up_b, "b"));
    let path = dir.path().join("keygate.toml");
    binary::write_config(&path, &a);
    let key = binary::cli_key(&path, ENV);
    let p = Process::serve(dir.path(), &path, ENV);

    let load = Load::start(format!("http://{}/api/x", p.proxy), Some(key), 4);
    for i in 1..=10 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        let (file, cli) = if i % 2 == 1 { (&b, false) } else { (&a, true) };
        reload(&p, &path, file, cli, "ok").await;
        let extra = reqwest::get(format!("http://{}/extra/x", p.proxy))
            .await
            .expect("send");
        assert_eq!(
            extra.status(),
            if i % 2 == 1 { 200 } else { 404 },
            "reload {i} applied"
        );
    }
    tokio::time::sleep(Duration::from_millis(150)).await;
    let tally = load.finish().await;
    tally.assert_all_ok("10 reloads under load");
    assert!(tally.responses() > 200, "the load ran: {tally:?}");
    assert!(
        up_a.count() > 0 && up_b.count() > 0,
        "both upstreams served"
    );
    assert_eq!(
        tally.bodies,
        ["upstream a", "upstream b"].map(String::from).into()
    );
    assert!(
        tally.policies.iter().any(|p| p.contains("q=100000;")),
        "{:?}",
        tally.policies
    );
    assert!(
        tally.policies.iter().any(|p| p.contains("q=200000;")),
        "{:?}",
        tally.policies
    );

    invalid_and_restart_only_via_signals(&p, &path, &a).await;
    p.terminate(Duration::from_secs(15)).await;
    let n = tally.responses() as i64;
    // And one for each /extra probe and the 401 after the invalid file.
    assert_eq!(
        wait_usage_rows(&db, n + 11).await,
        n + 11,
        "a row per response"
    );
}

/// An invalid file: `keygate reload` refuses it without signalling; SIGHUP
/// logs every problem and keeps serving. A changed thread count is named.
async fn invalid_and_restart_only_via_signals(p: &Process, path: &Path, good: &FileConfig) {
    let mut bad = good.clone();
    bad.route[0].upstream = "nowhere".into();
    bad.upstream[0].connect_timeout = Some("soon".into());
    binary::write_config(path, &bad);
    let (code, _, err) = binary::run(path, &["reload"], ENV);
    assert_ne!(code, 0, "keygate reload validated first");
    assert!(
        err.contains("route[0].upstream") && err.contains("upstream[0].connect_timeout"),
        "{err}"
    );
    reload(p, path, &bad, false, "invalid").await;
    let refused = eventually(Duration::from_secs(3), || async {
        p.logs().iter().any(|l| l.contains("reload refused"))
    });
    assert!(refused.await.is_some());
    let logs = p.logs();
    let line = logs
        .iter()
        .find(|l| l.contains("reload refused"))
        .expect("logged");
    assert!(
        line.contains("route[0].upstream") && line.contains("upstream[0].connect_timeout"),
        "{line}"
    );
    assert_eq!(
        reqwest::get(format!("http://{}/api/x", p.proxy))
            .await
            .expect("send")
            .status(),
        401
    );

    let mut threads = good.clone();
    threads.gateway.threads = Some(3);
    reload(p, path, &threads, false, "ok").await;
    let named = eventually(Duration::from_secs(3), || async {
        p.logs()
            .iter()
            .any(|l| l.contains("need a restart") && l.contains("gateway.threads"))
    });
    assert!(
        named.await.is_some(),
        "gateway.threads named as restart-only"
    );
}

/// A gateway on SQLite with `/slow` and `/` to upstream `a`.
async fn started(up: &Upstream) -> (TestConfig, TestGateway) {
    let cfg = TestConfig::new(StoreKind::Sqlite)
        .await
        .upstream("a", &[up.addr], |_| {})
        .route("r", "/", "a", TestConfig::public);
    let gw = cfg.start().await;
    (cfg, gw)
}

#[tokio::test]
async fn an_invalid_configuration_changes_nothing_and_names_every_problem() {
    let (up_a, up_b) = (Upstream::start("a").await, Upstream::start("b").await);
    let (cfg, gw) = started(&up_a).await;
    let running = gw.running.as_ref().expect("running");
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("bad.toml");
    let mut bad = cfg.file().clone();
    bad.route[0].upstream = "nowhere".into();
    bad.upstream[0].read_timeout = Some("eventually".into());
    bad.gateway.max_headers = Some(0);
    binary::write_config(&path, &bad);
    let e = running.reload_file(&path).expect_err("invalid");
    let text = e.to_string();
    for problem in [
        "route[0].upstream",
        "upstream[0].read_timeout",
        "gateway.max_headers",
    ] {
        assert!(text.contains(problem), "{problem} not reported: {text}");
    }
    assert!(text.contains(&path.display().to_string()), "{text}");
    assert!(matches!(e, ReloadError::Invalid(_)));
    std::fs::write(&path, "[gateway\nlisten = ").expect("write");
    assert!(
        running
            .reload_file(&path)
            .expect_err("not TOML")
            .to_string()
            .contains("TOML")
    );
    // Valid, but an upstream that does not resolve: refused before anything changes.
    let unresolvable = cfg
        .clone()
        .with(|f| f.upstream[0].servers = vec!["no-such-host.invalid:80".into()]);
    let e = running
        .reload(unresolvable.build())
        .expect_err("unresolvable");
    assert!(matches!(e, ReloadError::Resolve(_)), "{e}");
    assert!(
        gw.metric_reaches("keygate_config_reloads_total{result=\"invalid\"}", 3.0)
            .await
    );
    assert_eq!(
        metric_value(
            &gw.metrics().await,
            "keygate_config_reloads_total{result=\"ok\"}"
        )
        .unwrap_or(0.0),
        0.0
    );
    let resp = gw.get("/x").send().await.expect("send");
    assert_eq!(
        resp.text().await.expect("body"),
        "upstream a",
        "served as before"
    );
    assert_eq!(up_b.count(), 0);
    gw.stop().await;
}

#[tokio::test]
async fn restart_only_settings_are_named_and_in_flight_requests_keep_their_config() {
    let (up_a, up_b) = (Upstream::start("a").await, Upstream::start("b").await);
    let (cfg, gw) = started(&up_a).await;
    let running = gw.running.as_ref().expect("running");
    let slow = tokio::spawn(gw.get("/slow/700").send());
    assert!(
        eventually(Duration::from_secs(3), || async { up_a.count() == 1 })
            .await
            .is_some()
    );
    let next = cfg.clone().with(|f| {
        f.upstream[0].servers = vec![up_b.addr.to_string()];
        f.gateway.threads = Some(5);
        f.gateway.key_header = Some("x-other-key".into());
        f.gateway.request_head_timeout = Some("3s".into());
        f.log.level = Some("debug".into());
    });
    let done = running.reload(next.build()).expect("reload");
    for name in [
        "gateway.threads",
        "gateway.key_header",
        "gateway.request_head_timeout",
    ] {
        assert!(
            done.restart_only.iter().any(|r| r.contains(name)),
            "{name} not named: {done:?}"
        );
    }
    assert!(
        !done.restart_only.iter().any(|r| r.contains("log")),
        "the log level reloads: {done:?}"
    );
    let body = gw
        .get("/x")
        .send()
        .await
        .expect("send")
        .text()
        .await
        .expect("body");
    assert_eq!(body, "upstream b", "new requests see the new upstream");
    let old = slow.await.expect("join").expect("slow request");
    assert_eq!(
        old.text().await.expect("body"),
        "upstream a slow",
        "the in-flight one kept its own"
    );
    // Restart-only settings stay as they run: the next reload names them again.
    let again = running.reload(next.build()).expect("reload");
    assert!(
        again
            .restart_only
            .iter()
            .any(|r| r.contains("gateway.threads")),
        "{again:?}"
    );
    gw.stop().await;
}
