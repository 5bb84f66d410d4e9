//! The built binary: `check-config` reports every problem; SIGTERM drains,
//! SIGINT exits at once.

use std::time::{Duration, Instant};

use crate::harness::Upstream;
use crate::harness::binary::{self, Process};

#[test]
fn check_config_reports_every_problem_and_exits_2() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "[[upstream]]\nname = \"orders\"\nservers = []\n\n[[route]]\nname = \"a\"\nupstream = \"orders\"\n\n[[route]]\nname = \"a\"\nupstream = \"ordrs\"\n\n[[route]]\nname = \"c\"\nupstream = \"orders\"\nrate_limits = { minute = 1 }\ntimeout = \"soon\"\n",
    )
    .expect("write");
    let (code, _, err) = binary::run(&path, &["check-config"], &[]);
    assert_eq!(code, 2, "{err}");
    for want in [
        "upstream[0].servers: needs at least one server",
        "route[1].name: duplicate route name \"a\"",
        "route[1].upstream: no upstream named \"ordrs\"",
        "route[2].timeout: unknown key",
    ] {
        assert!(err.contains(want), "missing {want:?} in:\n{err}");
    }

    let good = dir.path().join("good.toml");
    std::fs::write(&good, "[[upstream]]\nname = \"u\"\nservers = [\"127.0.0.1:9\"]\n[[route]]\nname = \"r\"\npath_prefix = \"/v1\"\nupstream = \"u\"\nscopes = [\"a:read\"]\n").expect("write");
    let (code, out, err) = binary::run(&good, &["check-config"], &[]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("/v1") && out.contains("a:read") && out.contains("required"),
        "{out}"
    );
}

async fn lifecycle_config(
    dir: &std::path::Path,
    upstream: std::net::SocketAddr,
) -> std::path::PathBuf {
    let path = dir.join("keygate.toml");
    let db = crate::harness::pg::fresh_db().await;
    let mut file = binary::serving_config(&db, upstream);
    file.gateway.threads = Some(1);
    file.gateway.shutdown_grace = Some("10s".into());
    binary::write_config(&path, &file);
    path
}

#[tokio::test]
async fn sigterm_drains_an_in_flight_request_and_exits_0() {
    let up = Upstream::start("a").await;
    let dir = tempfile::tempdir().expect("tmp");
    let config = lifecycle_config(dir.path(), up.addr).await;
    let mut p = Process::serve(
        dir.path(),
        &config,
        &[("KEYGATE_HASH_SECRET", crate::harness::gateway::HASH_SECRET)],
    );
    let url = format!("http://{}/slow/1500", p.proxy);
    let client = reqwest::Client::new();
    let slow =
        tokio::spawn(async move { client.get(url).send().await.map(|r| r.status().as_u16()) });
    // Let the request reach the upstream, then ask the gateway to stop.
    let deadline = Instant::now() + Duration::from_secs(5);
    while up.count() == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let sent = Instant::now();
    p.signal(libc::SIGTERM);
    // Once the signal is handled the listener closes; probe after that.
    let handled = Instant::now() + Duration::from_secs(5);
    while !p.logs().iter().any(|l| l.contains("shutting down")) && Instant::now() < handled {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let refused = tokio::net::TcpStream::connect(p.proxy).await;
    let status = slow
        .await
        .expect("join")
        .expect("in-flight request completed");
    assert_eq!(status, 200, "the in-flight request finished normally");
    let (exit, _) = tokio::task::spawn_blocking(move || {
        let r = p.wait(Duration::from_secs(10));
        (r, p)
    })
    .await
    .map(|(r, _p)| r.expect("exited within 10 s"))
    .expect("join");
    assert!(exit.success(), "exit status {exit:?}");
    assert!(
        sent.elapsed() < Duration::from_secs(5),
        "exited promptly after draining"
    );
    // New connections were not served after SIGTERM (refused, or accepted by the
    // kernel backlog and then closed without an answer).
    if let Ok(mut s) = refused {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let _ = s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
        let mut buf = [0u8; 64];
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .unwrap_or(Ok(0))
            .unwrap_or(0);
        assert_eq!(n, 0, "a connection made after SIGTERM was served");
    }
}

#[tokio::test]
async fn sigint_exits_fast_without_waiting_for_requests() {
    let up = Upstream::start("a").await;
    let dir = tempfile::tempdir().expect("tmp");
    let config = lifecycle_config(dir.path(), up.addr).await;
    let mut p = Process::serve(
        dir.path(),
        &config,
        &[("KEYGATE_HASH_SECRET", crate::harness::gateway::HASH_SECRET)],
    );
    let url = format!("http://{}/slow/20000", p.proxy);
    let slow = tokio::spawn(async move { reqwest::get(url).await.map(|r| r.status().as_u16()) });
    let deadline = Instant::now() + Duration::from_secs(5);
    while up.count() == 0 {
        assert!(
            Instant::now() < deadline,
            "the request never reached the upstream"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    p.signal(libc::SIGINT);
    let (status, took) =
        tokio::task::spawn_blocking(move || p.wait(Duration::from_secs(5)).expect("exited"))
            .await
            .expect("join");
    assert!(took < Duration::from_secs(2), "SIGINT took {took:?}");
    assert!(
        status.code().is_some(),
        "exited by itself, not killed: {status:?}"
    );
    assert!(
        slow.await.expect("join").is_err(),
        "the in-flight request was cut off"
    );
}
