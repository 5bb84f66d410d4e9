//! Rate-limit headers on success and on 429, none on public routes; route
//! caps apply per key and per route.

use keygate::ratelimit::window::Limits;

use super::{key, redis, with_redis};
use crate::harness::{TestConfig, Upstream, get_with_key, status};

#[tokio::test]
async fn headers_on_success_and_on_429() {
    let r = redis().await;
    let up = Upstream::start("a").await;
    let cfg = with_redis(
        TestConfig::pg()
            .await
            .upstream("a", &[up.addr], |_| {})
            .route("r", "/", "a", |r| {
                r.rate_limits = [("day".into(), 100)].into()
            })
            .route("pub", "/public", "a", TestConfig::public),
        &r,
        |_| {},
    );
    let k = key(
        &cfg,
        Limits {
            minute: Some(3),
            ..Limits::default()
        },
    )
    .await;
    let gw = cfg.start().await;
    let resp = get_with_key(&gw, k.secret.expose()).await;
    assert_eq!(resp.status(), 200);
    let h = resp.headers();
    assert_eq!(h["x-ratelimit-limit"], "3");
    assert_eq!(h["x-ratelimit-remaining"], "2");
    let reset: u64 = h["x-ratelimit-reset"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!((1..=60).contains(&reset), "{reset}");
    assert_eq!(
        h["ratelimit-policy"],
        "\"minute\";q=3;w=60, \"r.day\";q=100;w=86400"
    );
    assert_eq!(
        h["ratelimit"].to_str().expect("ascii"),
        format!("\"minute\";r=2;t={reset}")
    );
    for _ in 0..2 {
        status(&gw, k.secret.expose()).await;
    }
    let resp = get_with_key(&gw, k.secret.expose()).await;
    assert_eq!(resp.status(), 429);
    let retry: u64 = resp.headers()["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!((1..=120).contains(&retry), "{retry}");
    assert_eq!(resp.headers()["x-ratelimit-remaining"], "0");
    let body: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(body["error"]["code"], "rate_limited");
    assert_eq!(body["error"]["window"], "minute");
    assert_eq!(body["error"]["retry_after"], retry);
    // Public routes carry no rate-limit headers.
    let resp = gw.get("/public/x").send().await.expect("send");
    assert_eq!(resp.status(), 200);
    assert!(!resp.headers().contains_key("x-ratelimit-limit"));
    assert!(!resp.headers().contains_key("ratelimit-policy"));
    gw.stop().await;
}

#[tokio::test]
async fn route_caps_apply_per_key() {
    let up = Upstream::start("a").await;
    let cfg = TestConfig::pg()
        .await
        .upstream("a", &[up.addr], |_| {})
        .route("capped", "/x", "a", |r| {
            r.rate_limits = [("minute".into(), 2)].into()
        })
        .route("free", "/y", "a", |_| {});
    let a = key(&cfg, Limits::default()).await;
    let b = key(&cfg, Limits::default()).await;
    let gw = cfg.start().await;
    for want in [200, 200, 429] {
        assert_eq!(status(&gw, a.secret.expose()).await, want);
    }
    assert_eq!(
        status(&gw, b.secret.expose()).await,
        200,
        "another key has its own cap"
    );
    let other_route = gw
        .get("/y")
        .header("x-api-key", a.secret.expose())
        .send()
        .await
        .expect("send");
    assert_eq!(other_route.status(), 200, "the cap is per route");
    assert!(
        !other_route.headers().contains_key("x-ratelimit-limit"),
        "no limits on that route for this key"
    );
    gw.stop().await;
}
