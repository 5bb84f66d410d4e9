//! Upstreams: failover past a dead server, refusals and timeouts as JSON
//! errors, bodies streamed rather than buffered.

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;

use super::body;
use crate::harness::{TestConfig, Upstream, dead_addr, error_code};

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
