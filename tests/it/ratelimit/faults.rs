//! Redis failures through the real proxy: killed (local fallback and
//! recovery), hung with SIGSTOP (bounded by the timeout, then the breaker),
//! each `on_backend_error` mode, and the script reloaded after a restart.
//! Leases are off (`lease = 1`) where a key's limits would lease: these tests
//! are about the call to Redis; a lease through an outage is in `leases`.

use std::time::{Duration, Instant};

use keygate::ratelimit::window::Limits;

use super::{key, redis, routed, with_redis};
use crate::harness::{TestConfig, TestGateway, Upstream, eventually, get_with_key, status};
#[tokio::test]
async fn redis_killed_falls_back_to_local_limits_and_recovers() {
    let mut r = redis().await;
    let up = Upstream::start("a").await;
    let cfg = with_redis(routed(&up).await, &r, |s| {
        s.on_backend_error = Some(keygate::config::OnBackendError::Local.into());
        s.lease = Some(1);
    });
    let k = key(
        &cfg,
        Limits {
            minute: Some(1000),
            day: Some(5000),
            ..Limits::default()
        },
    )
    .await;
    let small = key(
        &cfg,
        Limits {
            minute: Some(3),
            ..Limits::default()
        },
    )
    .await;
    let gw = cfg.start().await;
    assert_eq!(status(&gw, k.secret.expose()).await, 200);
    assert_eq!(gw.metric("keygate_ratelimit_degraded").await, 0.0);

    r.kill();
    for _ in 0..20 {
        assert_eq!(
            status(&gw, k.secret.expose()).await,
            200,
            "traffic keeps flowing"
        );
    }
    assert!(gw.metric_reaches("keygate_ratelimit_degraded", 1.0).await);
    assert!(gw.metric("keygate_ratelimit_backend_errors_total").await >= 1.0);
    // Never silently unlimited: local limits apply.
    let statuses: Vec<u16> =
        futures::future::join_all((0..6).map(|_| status(&gw, small.secret.expose()))).await;
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        3,
        "{statuses:?}"
    );

    let r = tokio::task::spawn_blocking(move || {
        r.restart();
        r
    })
    .await
    .expect("join");
    assert!(
        gw.metric_reaches("keygate_ratelimit_degraded", 0.0).await,
        "recovers by itself"
    );
    let before = r.calls("evalsha");
    assert_eq!(status(&gw, k.secret.expose()).await, 200);
    assert!(r.calls("evalsha") > before, "requests go to Redis again");
    gw.stop().await;
}

#[tokio::test]
async fn hung_redis_costs_at_most_the_timeout_then_nothing() {
    let r = redis().await;
    let up = Upstream::start("a").await;
    let cfg = with_redis(routed(&up).await, &r, |s| {
        s.breaker_failures = Some(3);
        s.timeout = Some("1s".into());
        s.lease = Some(1);
    });
    let k = key(
        &cfg,
        Limits {
            minute: Some(10_000),
            ..Limits::default()
        },
    )
    .await;
    let gw = cfg.start().await;
    assert_eq!(status(&gw, k.secret.expose()).await, 200);
    r.pause();
    let timeout = Duration::from_secs(1);
    let margin = Duration::from_millis(750);
    let mut timings = Vec::new();
    for _ in 0..10 {
        let t = Instant::now();
        assert_eq!(status(&gw, k.secret.expose()).await, 200);
        timings.push(t.elapsed());
    }
    assert!(
        timings.iter().all(|t| *t < timeout + margin),
        "every request answered within the timeout: {timings:?}"
    );
    assert!(
        timings[..3].iter().all(|t| *t >= timeout),
        "the first calls waited for Redis: {timings:?}"
    );
    assert!(
        timings[3..].iter().all(|t| *t < timeout / 2),
        "after the breaker opened, no waiting: {timings:?}"
    );
    assert_eq!(gw.metric("keygate_ratelimit_degraded").await, 1.0);
    r.resume();
    assert!(
        gw.metric_reaches("keygate_ratelimit_degraded", 0.0).await,
        "recovers after SIGCONT"
    );
    gw.stop().await;
}

async fn mode(on_error: &str) -> (TestGateway, String, String, Upstream) {
    let up = Upstream::start("a").await;
    let dead = format!("redis://127.0.0.1:{}", crate::harness::procs::free_port());
    let cfg = routed(&up).await.redis(&dead).ratelimit(|s| {
        s.timeout = Some("100ms".into());
        s.on_backend_error = Some(on_error.into());
    });
    let limited = key(
        &cfg,
        Limits {
            minute: Some(2),
            ..Limits::default()
        },
    )
    .await;
    let unlimited = key(&cfg, Limits::default()).await;
    let gw = cfg.start().await;
    (
        gw,
        limited.secret.expose().to_string(),
        unlimited.secret.expose().to_string(),
        up,
    )
}

#[tokio::test]
async fn on_backend_error_local() {
    let (gw, limited, unlimited, _up) = mode("local").await;
    let got: Vec<u16> = futures::future::join_all((0..4).map(|_| status(&gw, &limited))).await;
    assert_eq!(got.iter().filter(|s| **s == 200).count(), 2, "{got:?}");
    assert_eq!(status(&gw, &unlimited).await, 200);
    let (code, body) = gw.readyz().await;
    assert_eq!(
        (code, body["ratelimit"].as_str()),
        (200, Some("degraded_local"))
    );
    assert_eq!(gw.metric("keygate_ratelimit_degraded").await, 1.0);
    gw.stop().await;
}

#[tokio::test]
async fn on_backend_error_allow() {
    let (gw, limited, _, _up) = mode("allow").await;
    let got: Vec<u16> = futures::future::join_all((0..5).map(|_| status(&gw, &limited))).await;
    assert_eq!(got, vec![200; 5]);
    assert_eq!(gw.readyz().await.1["ratelimit"], "degraded_allow");
    gw.stop().await;
}

#[tokio::test]
async fn on_backend_error_deny() {
    let (gw, limited, unlimited, up) = mode("deny").await;
    let resp = get_with_key(&gw, &limited).await;
    assert_eq!(resp.status(), 503);
    assert!(resp.headers().contains_key("retry-after"));
    let body: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(
        body["error"]["code"], "rate_limit_unavailable",
        "never a 401"
    );
    assert_eq!(
        status(&gw, &unlimited).await,
        200,
        "keys without limits need no backend"
    );
    assert_eq!(up.count(), 1);
    let (code, body) = gw.readyz().await;
    assert_eq!(
        (code, body["ratelimit"].as_str()),
        (503, Some("degraded_deny"))
    );
    gw.stop().await;
}

#[tokio::test]
async fn commands_per_request_and_script_reload_after_restart() {
    let mut r = redis().await;
    let up = Upstream::start("a").await;
    let cfg = with_redis(
        TestConfig::pg()
            .await
            .upstream("a", &[up.addr], |_| {})
            .route("r", "/", "a", |r| {
                r.rate_limits = [("second".into(), 1000)].into()
            }),
        &r,
        // A 200 must come from the script on Redis, never a local fallback.
        |s| {
            s.on_backend_error = Some(keygate::config::OnBackendError::Deny.into());
            s.lease = Some(1);
        },
    );
    let limits = Limits {
        second: Some(1000),
        minute: Some(100_000),
        hour: Some(100_000),
        day: Some(1_000_000),
        month: None,
    };
    let k = key(&cfg, limits).await;
    let gw = cfg.start().await;
    status(&gw, k.secret.expose()).await;
    r.cmd(&["CONFIG", "RESETSTAT"]);
    for _ in 0..50 {
        assert_eq!(status(&gw, k.secret.expose()).await, 200);
    }
    assert_eq!(r.calls("evalsha"), 50, "one EVALSHA per request");
    assert_eq!(r.calls("eval"), 0);
    // A restarted Redis has no scripts: the gateway reloads on NOSCRIPT.
    r = tokio::task::spawn_blocking(move || {
        r.restart();
        r
    })
    .await
    .expect("join");
    let ok = eventually(Duration::from_secs(10), || async {
        status(&gw, k.secret.expose()).await == 200 && r.calls("evalsha") > 0
    })
    .await;
    assert!(ok.is_some());
    gw.stop().await;
}
