//! The walking skeleton: routing, upstream failover, rejections, header hygiene,
//! request ids, streaming, configuration errors and the process lifecycle.

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;

use crate::harness::binary::{self, Process};
use crate::harness::{TestConfig, Upstream, dead_addr, error_code};

async fn body(resp: reqwest::Response) -> String {
    resp.text().await.expect("body")
}

#[tokio::test]
async fn route_choice_prefix_boundary_longest_host_and_methods() {
    let (a, b, c, d) = tokio::join!(
        Upstream::start("a"),
        Upstream::start("b"),
        Upstream::start("c"),
        Upstream::start("d")
    );
    let gw = TestConfig::pg()
        .await
        .upstream("a", &[a.addr], |_| {})
        .upstream("b", &[b.addr], |_| {})
        .upstream("c", &[c.addr], |_| {})
        .upstream("d", &[d.addr], |_| {})
        .route("root", "/", "a", TestConfig::public)
        .route("orders", "/orders", "b", TestConfig::public)
        .route("items", "/orders/items", "c", TestConfig::public)
        .route("orders-host", "/orders", "d", |r| {
            TestConfig::public(r);
            r.host = Some("api.example.com".into());
        })
        .route("m-get", "/m", "a", |r| {
            TestConfig::public(r);
            r.methods = vec!["GET".into()];
        })
        .route("m-post", "/m", "b", |r| {
            TestConfig::public(r);
            r.methods = vec!["POST".into()];
        })
        .start()
        .await;
    let cases = [
        ("GET", "/orders", None, "upstream b"),
        ("GET", "/orders/42", None, "upstream b"),
        ("GET", "/ordersX", None, "upstream a"),
        ("GET", "/orders/items/1", None, "upstream c"),
        ("GET", "/orders/1", Some("api.example.com"), "upstream d"),
        (
            "GET",
            "/orders/1",
            Some("API.example.com:8080"),
            "upstream d",
        ),
        ("GET", "/orders/1", Some("other.example.com"), "upstream b"),
        ("GET", "/m/x", None, "upstream a"),
        ("POST", "/m/x", None, "upstream b"),
        ("DELETE", "/m/x", None, "upstream a"),
    ];
    for (method, path, host, want) in cases {
        let mut req = gw
            .client
            .request(method.parse().expect("method"), gw.url(path));
        if let Some(h) = host {
            req = req.header("host", h);
        }
        let resp = req.send().await.expect("send");
        assert_eq!(resp.status(), 200, "{method} {path} {host:?}");
        assert_eq!(body(resp).await, want, "{method} {path} {host:?}");
    }
    gw.stop().await;
}

#[tokio::test]
async fn no_route_is_a_json_404() {
    let up = Upstream::start("a").await;
    let gw = TestConfig::pg()
        .await
        .upstream("a", &[up.addr], |_| {})
        .route("only", "/only", "a", |r| {
            TestConfig::public(r);
            r.methods = vec!["GET".into()];
        })
        .start()
        .await;
    for (method, path) in [("GET", "/nothing"), ("POST", "/only")] {
        let resp = gw
            .client
            .request(method.parse().expect("m"), gw.url(path))
            .send()
            .await
            .expect("send");
        let rid = resp.headers()["x-request-id"]
            .to_str()
            .expect("rid")
            .to_string();
        assert_eq!(resp.headers()["content-type"], "application/json");
        let (status, v) = error_code(resp).await;
        assert_eq!(status, 404);
        assert_eq!(v["error"]["code"], "route_not_found");
        assert_eq!(v["error"]["request_id"], rid.as_str());
    }
    assert_eq!(up.count(), 0);
    assert!(
        gw.metric_reaches(
            "keygate_requests_total{outcome=\"route_not_found\",route=\"_none\"}",
            2.0
        )
        .await
    );
    gw.stop().await;
}

#[tokio::test]
async fn dot_segments_are_refused_before_routing() {
    let up = Upstream::start("a").await;
    let gw = TestConfig::pg()
        .await
        .upstream("a", &[up.addr], |_| {})
        .route("public", "/public", "a", TestConfig::public)
        .route("private", "/private", "a", |_| {})
        .start()
        .await;
    for path in [
        "/public/../private/x",
        "/public/%2e%2e/private/x",
        "/public/./x",
    ] {
        // Raw HTTP: client libraries normalise dot segments away before sending.
        let resp = raw_request(
            gw.proxy,
            &format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"),
        )
        .await;
        assert!(resp.starts_with("HTTP/1.1 400"), "{path}: {resp}");
        assert!(
            resp.contains("\"code\":\"invalid_request\""),
            "{path}: {resp}"
        );
    }
    assert_eq!(up.count(), 0, "nothing reached the upstream");
    gw.stop().await;
}

#[tokio::test]
async fn failover_skips_a_dead_server() {
    let live = Upstream::start("live").await;
    let dead = dead_addr();
    let gw = TestConfig::pg()
        .await
        .upstream("u", &[dead, live.addr], |u| {
            u.fail_timeout = Some("30s".into())
        })
        .route("r", "/", "u", TestConfig::public)
        .start()
        .await;
    for _ in 0..6 {
        let resp = gw.get("/x").send().await.expect("send");
        assert_eq!(resp.status(), 200);
        assert_eq!(body(resp).await, "upstream live");
    }
    assert_eq!(live.count(), 6);
    gw.stop().await;
}

#[tokio::test]
async fn upstream_refusing_is_a_json_502() {
    let gw = TestConfig::pg()
        .await
        .upstream("u", &[dead_addr()], |_| {})
        .route("r", "/", "u", TestConfig::public)
        .start()
        .await;
    let resp = gw.get("/x").send().await.expect("send");
    assert!(resp.headers().contains_key("x-request-id"));
    let (status, v) = error_code(resp).await;
    assert_eq!(status, 502);
    assert_eq!(v["error"]["code"], "upstream_unavailable");
    assert!(
        gw.metric_reaches(
            "keygate_requests_total{outcome=\"upstream_unavailable\",route=\"r\"}",
            1.0
        )
        .await
    );
    gw.stop().await;
}

#[tokio::test]
async fn slow_upstream_is_a_json_504() {
    let up = Upstream::start("slow").await;
    let gw = TestConfig::pg()
        .await
        .upstream("u", &[up.addr], |u| u.read_timeout = Some("300ms".into()))
        .route("r", "/", "u", TestConfig::public)
        .start()
        .await;
    let started = Instant::now();
    let (status, v) = error_code(gw.get("/slow/3000").send().await.expect("send")).await;
    assert_eq!(status, 504);
    assert_eq!(v["error"]["code"], "upstream_timeout");
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "timed out at the read timeout, not the upstream's pace"
    );
    gw.stop().await;
}

#[tokio::test]
async fn spoofed_keygate_headers_never_reach_upstream_and_xff_is_appended() {
    let up = Upstream::start("a").await;
    let gw = TestConfig::pg()
        .await
        .upstream("a", &[up.addr], |_| {})
        .route("r", "/", "a", TestConfig::public)
        .start()
        .await;
    // Raw HTTP so header-name casing is exactly what a client sends.
    let req = "GET /x HTTP/1.1\r\nHost: api.test\r\nX-Keygate-Key-Id: spoof1\r\nx-keygate-owner-id: spoof2\r\nX-KEYGATE-SCOPES: *\r\nX-KeyGate-Meta-Plan: gold\r\nX-Forwarded-For: 203.0.113.7\r\nConnection: close\r\n\r\n";
    let resp = raw_request(gw.proxy, req).await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    let seen = up.last();
    assert!(
        seen.keygate_headers().is_empty(),
        "spoofed headers reached upstream: {:?}",
        seen.keygate_headers()
    );
    assert_eq!(
        seen.header("x-forwarded-for"),
        Some("203.0.113.7, 127.0.0.1")
    );
    assert_eq!(seen.header("x-forwarded-proto"), Some("http"));
    assert_eq!(seen.header("x-forwarded-host"), Some("api.test"));
    gw.stop().await;
}

async fn raw_request(addr: std::net::SocketAddr, req: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(req.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn request_ids_are_kept_when_sane_and_generated_otherwise() {
    let up = Upstream::start("a").await;
    let gw = TestConfig::pg()
        .await
        .upstream("a", &[up.addr], |_| {})
        .route("r", "/", "a", TestConfig::public)
        .start()
        .await;
    let resp = gw
        .get("/x")
        .header("x-request-id", "client-id-123")
        .send()
        .await
        .expect("send");
    assert_eq!(resp.headers()["x-request-id"], "client-id-123");
    assert_eq!(up.last().header("x-request-id"), Some("client-id-123"));

    let resp = gw
        .get("/x")
        .header("x-request-id", "not sane; id")
        .send()
        .await
        .expect("send");
    let generated = resp.headers()["x-request-id"]
        .to_str()
        .expect("ascii")
        .to_string();
    assert_ne!(generated, "not sane; id");
    assert_eq!(generated.len(), 36);
    assert_eq!(up.last().header("x-request-id"), Some(generated.as_str()));

    let resp = gw.get("/x").send().await.expect("send");
    let a = resp.headers()["x-request-id"]
        .to_str()
        .expect("ascii")
        .to_string();
    let resp = gw.get("/x").send().await.expect("send");
    assert_ne!(a, resp.headers()["x-request-id"].to_str().expect("ascii"));
    gw.stop().await;
}

#[tokio::test]
async fn large_bodies_stream_through() {
    let up = Upstream::start("a").await;
    let gw = TestConfig::pg()
        .await
        .upstream("a", &[up.addr], |_| {})
        .route("r", "/", "a", TestConfig::public)
        .start()
        .await;
    const CHUNK: usize = 1 << 20;
    const CHUNKS: usize = 48;
    let chunks = futures::stream::iter(0..CHUNKS).then(|i| async move {
        if i > 0 {
            tokio::time::sleep(Duration::from_millis(15)).await;
        }
        Ok::<Bytes, std::io::Error>(Bytes::from(vec![b'x'; CHUNK]))
    });
    let started = Instant::now();
    let resp = gw
        .client
        .post(gw.url("/upload"))
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .expect("send");
    let finished = Instant::now();
    assert_eq!(resp.status(), 200);
    let seen = up.last();
    assert_eq!(seen.body_len, CHUNK * CHUNKS);
    let first = seen.first_body_byte.expect("body arrived");
    // The client took ≥ 0.7 s to send; the upstream saw bytes long before the end.
    assert!(finished - started >= Duration::from_millis(700));
    assert!(
        first - started < (finished - started) / 2,
        "body was buffered, not streamed"
    );
    gw.stop().await;
}

#[tokio::test]
async fn required_routes_without_a_store_key_answer_401() {
    let up = Upstream::start("a").await;
    let gw = TestConfig::pg()
        .await
        .upstream("a", &[up.addr], |_| {})
        .route("private", "/", "a", |_| {})
        .start()
        .await;
    let resp = gw.get("/x").send().await.expect("send");
    assert!(
        resp.headers()["www-authenticate"]
            .to_str()
            .expect("ascii")
            .contains("x-api-key")
    );
    let (status, v) = error_code(resp).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (401, Some("missing_key"))
    );
    let (status, v) = error_code(
        gw.get("/x")
            .header("x-api-key", "kg_garbage")
            .send()
            .await
            .expect("send"),
    )
    .await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (401, Some("invalid_key"))
    );
    assert_eq!(up.count(), 0);
    gw.stop().await;
}

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
