//! Credits: a fixed cost across gateways, upstream-reported costs debited
//! exactly, refill at the boundary (manual clock), embedded mode's balance
//! across a restart.

use chrono::TimeZone;
use keygate::BuildOptions;
use keygate::clock::Clock;
use keygate::credits::{Interval, Refill};
use keygate::owners::OwnerPatch;
use serde_json::Value;

use super::*;
use crate::harness::redis::RedisServer;
use crate::harness::{eventually, get_with_key, key_spec};

#[tokio::test]
async fn credits_of_c_with_cost_3_admit_exactly_a_third_across_two_gateways() {
    let r = redis().await;
    let up = Upstream::start("a").await;
    let cfg = strict_redis(routed(&up, |r| r.cost = Some(3)).await, &r);
    let s = cfg.services().await;
    let acme = OwnerPatch {
        id: Some("acme".into()),
        credits: credits(100, None),
        ..OwnerPatch::default()
    };
    owner(&s, acme).await;
    let mut keys = Vec::new();
    for _ in 0..3 {
        keys.push(key(&s, key_spec("acme")).await);
    }
    let secrets: Vec<&str> = keys.iter().map(|k| k.secret.expose()).collect();
    let (a, b) = tokio::join!(cfg.start(), cfg.start());
    let statuses = burst(&[&a, &b], "/x", &secrets, 200, 64).await;
    assert_eq!((count(&statuses, 200), count(&statuses, 402)), (33, 167));
    let resp = get_with_key(&a, secrets[0]).await;
    assert_eq!(resp.headers()["x-credits-remaining"], "1");
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["error"]["code"], "credits_exhausted");
    assert_eq!(
        (
            body["error"]["credits_remaining"].as_i64(),
            body["error"]["cost"].as_i64()
        ),
        (Some(1), Some(3))
    );
    a.stop().await;
    b.stop().await;
}

/// The Redis balance of a key whose owner counts nothing of its own.
fn redis_spent(r: &RedisServer, lineage: uuid::Uuid) -> i64 {
    match r.cmd(&["HGET", &format!("kg:{{{lineage}}}:c"), "s"]) {
        redis::Value::BulkString(b) => String::from_utf8_lossy(&b).parse().unwrap_or(-1),
        _ => -1,
    }
}

#[tokio::test]
async fn upstream_reported_costs_are_debited_exactly() {
    let r = redis().await;
    let up = Upstream::start("a").await;
    let cfg = strict_redis(
        routed(&up, |r| r.cost_header = Some("x-cost".into())).await,
        &r,
    );
    let s = cfg.services().await;
    let k = key_with_credits(&s, key_spec("acme"), credits(100_000, None)).await;
    let low = key_with_credits(&s, key_spec("acme"), credits(5, None)).await;
    let (a, b) = tokio::join!(cfg.start(), cfg.start());
    let secret = k.secret.expose();
    use futures::StreamExt;
    let reported: Vec<i64> = (0..120).map(|i| (i * 7) % 10).collect();
    let statuses: Vec<u16> = futures::stream::iter(reported.iter().enumerate())
        .map(|(i, n)| {
            let gw = if i % 2 == 0 { &a } else { &b };
            async move { call(gw, &format!("/cost/{n}"), secret).await.0 }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    assert_eq!(count(&statuses, 200), 120);
    let total: i64 = reported.iter().sum();
    let lineage = k.key.lineage_id;
    let settled = eventually(std::time::Duration::from_secs(5), || async {
        redis_spent(&r, lineage) == total
    })
    .await;
    assert!(
        settled.is_some(),
        "redis spent {} != reported {total}",
        redis_spent(&r, lineage)
    );
    let recorded = eventually(std::time::Duration::from_secs(5), || async {
        let k = s.keys.get(k.key.id).await.expect("key");
        k.credits.map(|c| c.remaining) == Some(100_000 - total)
    })
    .await;
    assert!(
        recorded.is_some(),
        "the ledger (usage records) has the same debits"
    );

    // Admitted while something is left; below zero by at most that request's cost.
    let low_secret = low.secret.expose();
    let first = call(&a, "/cost/4", low_secret).await;
    assert_eq!(first, (200, Some(1)));
    assert_eq!(call(&a, "/cost/4", low_secret).await, (200, Some(0)));
    assert_eq!(call(&a, "/cost/4", low_secret).await.0, 402);
    let left = eventually(std::time::Duration::from_secs(5), || async {
        redis_spent(&r, low.key.lineage_id) == 8
    })
    .await;
    assert!(
        left.is_some(),
        "5 - 8 = -3: below zero by less than the last request's 4"
    );
    a.stop().await;
    b.stop().await;
}

fn at(y: i32, m: u32, d: u32, h: u32, mi: u32, s: u32, ms: i64) -> chrono::DateTime<chrono::Utc> {
    chrono::Utc
        .with_ymd_and_hms(y, m, d, h, mi, s)
        .single()
        .expect("time")
        + chrono::Duration::milliseconds(ms)
}

async fn refill_at_the_boundary(redis: Option<&RedisServer>) {
    let up = Upstream::start("a").await;
    let mut cfg = routed(&up, |_| {}).await;
    if let Some(r) = redis {
        cfg = strict_redis(cfg, r);
    }
    let s = cfg.services().await;
    let daily = Refill {
        amount: 3,
        interval: Interval::Day,
        day_of_month: None,
    };
    let monthly = Refill {
        amount: 2,
        interval: Interval::Month,
        day_of_month: Some(15),
    };
    // Created now (2026): by 2031 both are in a later period, so each holds its refill amount.
    let d = key_with_credits(&s, key_spec("o"), credits(100, Some(daily))).await;
    let m = key_with_credits(&s, key_spec("o"), credits(100, Some(monthly))).await;
    let clock = Clock::manual(at(2031, 1, 1, 23, 59, 0, 0));
    let gw = cfg
        .start_with(BuildOptions {
            clock: clock.clone(),
        })
        .await;
    let (d, m) = (d.secret.expose(), m.secret.expose());
    let run = |k: &str, n: usize| {
        let (gw, k) = (&gw, k.to_string());
        async move { count(&burst(&[gw], "/x", &[&k], n, 1).await, 200) }
    };
    assert_eq!(run(d, 5).await, 3, "daily: the refill amount");
    assert_eq!(run(m, 5).await, 2, "monthly: the refill amount");
    clock.set(at(2031, 1, 1, 23, 59, 59, 999));
    assert_eq!(call(&gw, "/x", d).await.0, 402, "not yet");
    clock.set(at(2031, 1, 2, 0, 0, 0, 0));
    assert_eq!(
        run(d, 5).await,
        3,
        "refilled at 00:00 UTC, replacing (not adding to) the balance"
    );
    assert_eq!(
        call(&gw, "/x", m).await.0,
        402,
        "the monthly one waits for the 15th"
    );
    clock.set(at(2031, 1, 14, 23, 59, 59, 999));
    assert_eq!(call(&gw, "/x", m).await.0, 402);
    clock.set(at(2031, 1, 15, 0, 0, 0, 0));
    assert_eq!(
        call(&gw, "/x", m).await,
        (200, Some(1)),
        "refilled on day_of_month 15"
    );
    gw.stop().await;
}

#[tokio::test]
async fn refill_at_the_boundary_in_memory() {
    refill_at_the_boundary(None).await;
}

#[tokio::test]
async fn refill_at_the_boundary_with_redis() {
    let r = redis().await;
    refill_at_the_boundary(Some(&r)).await;
}

#[tokio::test]
async fn embedded_balances_are_rebuilt_from_sqlite_after_a_restart() {
    let up = Upstream::start("a").await;
    let cfg = TestConfig::new(crate::harness::StoreKind::Sqlite)
        .await
        .upstream("a", &[up.addr], |_| {})
        .route("r", "/", "a", |_| {});
    let s = cfg.services().await;
    let k = key_with_credits(&s, key_spec("o"), credits(5, None)).await;
    let secret = k.secret.expose();
    let gw = cfg.start().await;
    assert_eq!(count(&burst(&[&gw], "/x", &[secret], 3, 1).await, 200), 3);
    // A graceful stop writes the usage queue (the debits) to SQLite.
    let mut gw = gw;
    if let Some(r) = gw.running.take() {
        r.stop(keygate::Stop::Graceful).await;
    }
    let gw = cfg.start().await;
    let statuses = burst(&[&gw], "/x", &[secret], 4, 1).await;
    assert_eq!((count(&statuses, 200), count(&statuses, 402)), (2, 2));
    gw.stop().await;
}
