//! Exactly the limit passes under concurrency (Redis, two gateways sharing
//! it, in memory), and a rejection counts in no window.

use keygate::ratelimit::window::Limits;

use super::{burst, key, redis, routed, strict, with_redis};
use crate::harness::{Upstream, status};

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

/// Requests in flight together share script calls (one `EVALSHA` for many)
/// and each is still decided exactly: a busy key and a limited key, mixed in
/// the same calls. Leases off: every request is decided in Redis.
#[tokio::test]
async fn requests_in_flight_together_share_script_calls_and_stay_exact() {
    let r = redis().await;
    let up = Upstream::start("a").await;
    let cfg = with_redis(routed(&up).await, &r, |s| {
        strict(s);
        s.lease = Some(1);
    });
    let busy = key(
        &cfg,
        Limits {
            second: Some(1_000_000),
            minute: Some(1_000_000),
            hour: Some(1_000_000),
            ..Limits::default()
        },
    )
    .await;
    let limited = key(
        &cfg,
        Limits {
            minute: Some(45),
            ..Limits::default()
        },
    )
    .await;
    let gw = cfg.start().await;
    let before = r.calls("evalsha");
    // All admitted, so the local over-limit cache saves no call.
    let all_ok = burst(&[&gw], busy.secret.expose(), 300, 48).await;
    assert_eq!(all_ok, (300, 0, 0));
    let calls = r.calls("evalsha") - before;
    eprintln!("300 requests, 48 in flight: {calls} script calls");
    assert!(
        calls < 300,
        "300 requests, 48 in flight, took {calls} script calls"
    );
    let hour: i64 = r
        .counters(&format!("kg:{{{}}}:k:hour:*", busy.key.lineage_id))
        .values()
        .sum();
    assert_eq!(hour, 300, "every request counted once");
    let gws = [&gw];
    let (a, b) = tokio::join!(
        burst(&gws, busy.secret.expose(), 200, 24),
        burst(&gws, limited.secret.expose(), 200, 24)
    );
    assert_eq!(a, (200, 0, 0));
    assert_eq!(b, (45, 155, 0));
    gw.stop().await;
}
