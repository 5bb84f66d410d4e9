//! The local over-limit cache: an exhausted key is refused without asking Redis.

use keygate::ratelimit::window::Limits;

use super::{burst, key, redis, routed, with_redis};
use crate::harness::{Upstream, status};

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
