//! Rate limits through the real proxy, with a real Redis: exactness under
//! concurrency (one and two gateways), all-or-nothing counting, window resets
//! and the calendar month, headers, batched mode, the local over-limit cache.
//! Redis failures are in `faults`.

mod faults;

use std::time::Duration;

use chrono::TimeZone;
use keygate::BuildOptions;
use keygate::clock::Clock;
use keygate::keys::model::KeySpec;
use keygate::ratelimit::window::Limits;

use crate::harness::redis::RedisServer;
use crate::harness::{TestConfig, TestGateway, Upstream, eventually, status};

fn spec(limits: Limits) -> KeySpec {
    KeySpec {
        rate_limits: limits,
        ..crate::harness::key_spec("o")
    }
}

/// Creates a key with `limits` in the test's store.
async fn key(cfg: &TestConfig, limits: Limits) -> keygate::service::CreatedKey {
    cfg.keys()
        .await
        .create(spec(limits), &"t".into())
        .await
        .expect("create")
}

/// A Postgres-backed config with one catch-all route to `up`.
async fn routed(up: &Upstream) -> TestConfig {
    TestConfig::pg()
        .await
        .upstream("a", &[up.addr], |_| {})
        .route("r", "/", "a", |_| {})
}

async fn redis() -> RedisServer {
    tokio::task::spawn_blocking(RedisServer::start)
        .await
        .expect("join")
}

type Section = keygate::config::file::RateLimitSection;
/// Changes [`with_redis`] makes after its own.
type Extra = fn(&mut Section);

/// A Redis-backed `[ratelimit]` section with a timeout of 250 ms; `extra`
/// changes it further.
fn with_redis(cfg: TestConfig, r: &RedisServer, extra: impl FnOnce(&mut Section)) -> TestConfig {
    cfg.redis(&r.url()).ratelimit(|s| {
        s.timeout = Some("250ms".into());
        s.breaker_probe_interval = Some("200ms".into());
        extra(s);
    })
}

/// For the exactness tests: a slow Redis (a loaded test machine) must show up
/// as a 503, not as the per-instance fallback quietly admitting more.
fn strict(s: &mut Section) {
    s.timeout = Some("5s".into());
    s.on_backend_error = Some(keygate::config::OnBackendError::Deny.into());
}

/// Sends `n` requests with at most `concurrency` in flight; counts statuses.
async fn burst(
    gws: &[&TestGateway],
    key: &str,
    n: usize,
    concurrency: usize,
) -> (usize, usize, usize) {
    use futures::StreamExt;
    let results: Vec<u16> = futures::stream::iter(0..n)
        .map(|i| status(gws[i % gws.len()], key))
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let c = |s| results.iter().filter(|x| **x == s).count();
    (c(200), c(429), results.len() - c(200) - c(429))
}

#[tokio::test]
async fn exactly_the_limit_passes_under_concurrency_with_redis() {
    let r = redis().await;
    let up = Upstream::start("a").await;
    let cfg = with_redis(routed(&up).await, &r, strict);
    let k = key(
        &cfg,
        Limits {
            minute: Some(50),
            ..Limits::default()
        },
    )
    .await;
    let gw = cfg.start().await;
    let (ok, limited, other) = burst(&[&gw], k.secret.expose(), 400, 64).await;
    assert_eq!((ok, limited, other), (50, 350, 0));
    gw.stop().await;
}

#[tokio::test]
async fn exactly_the_limit_passes_across_two_gateways_sharing_redis() {
    let r = redis().await;
    let up = Upstream::start("a").await;
    let cfg = with_redis(routed(&up).await, &r, strict);
    let k = key(
        &cfg,
        Limits {
            minute: Some(60),
            ..Limits::default()
        },
    )
    .await;
    let (a, b) = tokio::join!(cfg.start(), cfg.start());
    let (ok, limited, other) = burst(&[&a, &b], k.secret.expose(), 400, 64).await;
    assert_eq!((ok, limited, other), (60, 340, 0));
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn exactly_the_limit_passes_under_concurrency_in_memory() {
    let up = Upstream::start("a").await;
    let cfg = routed(&up).await;
    let k = key(
        &cfg,
        Limits {
            hour: Some(37),
            ..Limits::default()
        },
    )
    .await;
    let gw = cfg.start().await;
    assert_eq!(
        burst(&[&gw], k.secret.expose(), 300, 64).await,
        (37, 263, 0)
    );
    gw.stop().await;
}

#[tokio::test]
async fn a_rejection_counts_in_no_window() {
    let r = redis().await;
    let up = Upstream::start("a").await;
    let cfg = with_redis(routed(&up).await, &r, |_| {});
    let limits = Limits {
        second: Some(1000),
        minute: Some(5),
        hour: Some(1000),
        day: Some(1000),
        month: Some(1000),
    };
    let k = key(&cfg, limits).await;
    let gw = cfg.start().await;
    let mut statuses = Vec::new();
    for _ in 0..12 {
        statuses.push(status(&gw, k.secret.expose()).await);
    }
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 5);
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 7);
    let counters = r.counters(&format!("kg:{{{}}}:*", k.key.lineage_id));
    let mut per_window: std::collections::BTreeMap<String, i64> = Default::default();
    for (key, v) in counters {
        let window = key.split(':').nth(3).unwrap_or("?").to_string();
        *per_window.entry(window).or_default() += v;
    }
    for w in ["second", "minute", "hour", "day", "month"] {
        // `second` may straddle a bucket boundary; its buckets sum to 5 all the same.
        assert_eq!(per_window.get(w), Some(&5), "{w}: {per_window:?}");
    }
    gw.stop().await;
}

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
    let resp = gw
        .get("/x")
        .header("x-api-key", k.secret.expose())
        .send()
        .await
        .expect("send");
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
    let resp = gw
        .get("/x")
        .header("x-api-key", k.secret.expose())
        .send()
        .await
        .expect("send");
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

async fn windows_reset_and_month_rolls_over(redis: Option<(&RedisServer, Extra)>) {
    let up = Upstream::start("a").await;
    let mut cfg = routed(&up).await;
    if let Some((r, extra)) = redis {
        cfg = with_redis(cfg, r, extra);
    }
    let limits = Limits {
        minute: Some(2),
        month: Some(5),
        ..Limits::default()
    };
    let k = key(&cfg, limits).await;
    let clock = Clock::manual(
        chrono::Utc
            .with_ymd_and_hms(2031, 1, 31, 23, 50, 0)
            .single()
            .expect("time"),
    );
    let gw = cfg
        .start_with(BuildOptions {
            clock: clock.clone(),
        })
        .await;
    let key = k.secret.expose();
    assert_eq!(status(&gw, key).await, 200);
    assert_eq!(status(&gw, key).await, 200);
    assert_eq!(status(&gw, key).await, 429, "minute full");
    clock.advance_ms(3 * 60_000);
    assert_eq!(status(&gw, key).await, 200, "minute window reset");
    assert_eq!(status(&gw, key).await, 200);
    clock.advance_ms(3 * 60_000);
    assert_eq!(status(&gw, key).await, 200, "5th of the month");
    clock.advance_ms(3 * 60_000);
    let resp = gw
        .get("/x")
        .header("x-api-key", key)
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 429);
    let body: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(body["error"]["window"], "month");
    // 23:59:00 on Jan 31st: the month ends in 60 s.
    assert_eq!(body["error"]["retry_after"], 60);
    clock.set(
        chrono::Utc
            .with_ymd_and_hms(2031, 2, 1, 0, 0, 1)
            .single()
            .expect("time"),
    );
    assert_eq!(status(&gw, key).await, 200, "a new calendar month (UTC)");
    gw.stop().await;
}

#[tokio::test]
async fn windows_reset_and_month_rolls_over_in_memory() {
    windows_reset_and_month_rolls_over(None).await;
}

#[tokio::test]
async fn windows_reset_and_month_rolls_over_with_redis() {
    let r = redis().await;
    windows_reset_and_month_rolls_over(Some((&r, |_| {}))).await;
}

#[tokio::test]
async fn windows_reset_and_month_rolls_over_batched() {
    let r = redis().await;
    windows_reset_and_month_rolls_over(Some((&r, batched))).await;
}

/// Batched mode, strict as the exactness tests are (see [`strict`]).
fn batched(s: &mut Section) {
    s.mode = Some(keygate::config::file::ModeName::Batched.into());
    s.batch_interval = Some("20ms".into());
    strict(s);
}

#[tokio::test]
async fn batched_mode_is_exact_on_one_instance_and_costs_redis_little() {
    let r = redis().await;
    let up = Upstream::start("a").await;
    let cfg = with_redis(routed(&up).await, &r, batched);
    let k = key(
        &cfg,
        Limits {
            minute: Some(50),
            hour: Some(1000),
            ..Limits::default()
        },
    )
    .await;
    let gw = cfg.start().await;
    r.cmd(&["CONFIG", "RESETSTAT"]);
    let (ok, limited, other) = burst(&[&gw], k.secret.expose(), 400, 64).await;
    assert_eq!(
        (ok, limited, other),
        (50, 350, 0),
        "one instance decides exactly"
    );
    // Counted locally, flushed in batches: far fewer Redis calls than requests.
    let calls = r.calls("evalsha") + r.calls("eval");
    assert!(calls < 40, "{calls} Redis calls for 400 requests");
    // The flushes carry the counts to Redis.
    let flushed = eventually(Duration::from_secs(3), || async {
        let c = r.counters(&format!("kg:{{{}}}:k:minute:*", k.key.lineage_id));
        c.values().sum::<i64>() == 50
    })
    .await;
    assert!(flushed.is_some(), "{:?}", r.counters("kg:*"));
    gw.stop().await;
}

#[tokio::test]
async fn batched_mode_over_admits_within_its_bound_across_instances() {
    let r = redis().await;
    let up = Upstream::start("a").await;
    let cfg = with_redis(routed(&up).await, &r, batched);
    let k = key(
        &cfg,
        Limits {
            minute: Some(40),
            ..Limits::default()
        },
    )
    .await;
    let (a, b) = tokio::join!(cfg.start(), cfg.start());
    // One request every 5 ms, alternating: about two per instance per 20 ms
    // interval, so the bound is a handful of requests over the limit.
    let mut admitted = 0;
    for i in 0..120 {
        let gw = if i % 2 == 0 { &a } else { &b };
        if status(gw, k.secret.expose()).await == 200 {
            admitted += 1;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(
        (40..=46).contains(&admitted),
        "admitted {admitted} against a limit of 40"
    );
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn an_exhausted_key_costs_redis_nothing() {
    let r = redis().await;
    let up = Upstream::start("a").await;
    let cfg = with_redis(routed(&up).await, &r, |_| {});
    let k = key(
        &cfg,
        Limits {
            hour: Some(3),
            ..Limits::default()
        },
    )
    .await;
    let gw = cfg.start().await;
    for _ in 0..4 {
        status(&gw, k.secret.expose()).await;
    }
    let before = r.calls("evalsha");
    let (ok, limited, _) = burst(&[&gw], k.secret.expose(), 200, 16).await;
    assert_eq!((ok, limited), (0, 200));
    assert_eq!(
        r.calls("evalsha"),
        before,
        "rejections were answered locally"
    );
    gw.stop().await;
}
