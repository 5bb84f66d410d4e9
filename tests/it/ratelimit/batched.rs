//! Batched mode: exact on one instance at little Redis cost, and over-admitting
//! within its bound across instances.

use std::time::Duration;

use keygate::ratelimit::window::Limits;

use super::{batched, burst, key, redis, routed, with_redis};
use crate::harness::{Upstream, eventually, status};

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
