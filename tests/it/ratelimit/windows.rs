//! Windows reset and the calendar month rolls over (UTC), in memory, with
//! Redis and batched, on a manual clock.

use chrono::TimeZone;
use keygate::BuildOptions;
use keygate::clock::Clock;
use keygate::ratelimit::window::Limits;

use super::{Extra, batched, key, redis, routed, with_redis};
use crate::harness::redis::RedisServer;
use crate::harness::{Upstream, get_with_key, status};

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
    let resp = get_with_key(&gw, key).await;
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
