//! Header hygiene: spoofed identity headers dropped, `X-Forwarded-*` set;
//! request ids kept when sane and generated otherwise.

use super::raw_request;
use crate::harness::{TestConfig, Upstream};

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
