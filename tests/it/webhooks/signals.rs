//! Events from the request path and the expiry scan: `ratelimit.exceeded` at
//! most once per key and window, `credits.low` once per crossing,
//! `key.expiring` once per key and expiry.

use std::collections::HashSet;

use keygate::clock::Clock;
use keygate::credits::CreditsInput;
use keygate::keys::model::KeyPatch;
use keygate::ratelimit::window::Limits;

use super::*;
use crate::harness::{TestConfig, Upstream, get_with_key, key_spec};

#[tokio::test]
async fn ratelimit_exceeded_once_per_window_and_credits_low_once_per_crossing() {
    let r = Receiver::start(SECRET_A).await;
    let up = Upstream::start("a").await;
    let hooks = vec![endpoint(
        "r",
        &r.url(),
        &["ratelimit.*", "credits.low"],
        "HOOK_SECRET_A",
    )];
    let mut tuning = fast("1h");
    tuning.credits_low_threshold = Some(3);
    let cfg = with_hooks(TestConfig::pg().await, tuning, hooks)
        .upstream("a", &[up.addr], |_| {})
        .route("r", "/", "a", |rt| rt.cost = Some(1));
    let s = cfg.services().await;
    let mut limited = key_spec("o");
    limited.rate_limits = Limits {
        minute: Some(2),
        ..Limits::default()
    };
    let limited = s.keys.create(limited, &"t".into()).await.expect("key");
    let mut patch = KeyPatch::from(key_spec("o"));
    patch.credits = Some(Some(CreditsInput {
        remaining: Some(6),
        refill: None,
    }));
    let paying = s.keys.create(patch, &"t".into()).await.expect("key");
    // Started after the keys exist: its first load has them.
    let gw = cfg.start().await;
    let mut statuses = Vec::new();
    for _ in 0..10 {
        for k in [&limited, &paying] {
            let resp = get_with_key(&gw, k.secret.expose()).await;
            statuses.push(resp.status().as_u16());
        }
    }
    assert!(
        statuses.contains(&429) && statuses.contains(&402),
        "{statuses:?}"
    );
    assert!(
        until(10, || async {
            let t = r.types();
            t.contains(&"credits.low".to_string()) && t.contains(&"ratelimit.exceeded".to_string())
        })
        .await,
        "{:?}",
        r.types()
    );
    // Let any duplicate that was going to come arrive (it must not).
    let _ = until(2, || async { false }).await;
    let events: Vec<serde_json::Value> = r.events().into_values().collect();
    let low: Vec<_> = events
        .iter()
        .filter(|e| e["type"] == "credits.low")
        .collect();
    assert_eq!(low.len(), 1, "{low:?}");
    assert_eq!(low[0]["data"]["remaining"], 2);
    assert_eq!(low[0]["data"]["key_id"], paying.key.id.to_string());
    let rl: Vec<_> = events
        .iter()
        .filter(|e| e["type"] == "ratelimit.exceeded")
        .collect();
    // One per (key, window bucket): a minute boundary during the run makes two.
    let buckets: HashSet<String> = rl
        .iter()
        .map(|e| e["data"]["window_start"].to_string())
        .collect();
    assert_eq!(rl.len(), buckets.len(), "{rl:?}");
    assert!(rl.len() <= 2);
    assert!(
        rl.iter()
            .all(|e| e["data"]["key_id"] == limited.key.id.to_string())
    );
    assert!(r.received().iter().all(|g| g.valid));
    gw.stop().await;
}

#[tokio::test]
async fn key_expiring_is_enqueued_once_per_key_and_expiry() {
    let r = Receiver::start(SECRET_A).await;
    let hooks = vec![endpoint("r", &r.url(), &["key.expiring"], "HOOK_SECRET_A")];
    let cfg = with_hooks(TestConfig::pg().await, fast("1h"), hooks);
    let s = cfg.services().await;
    let soon = KeyPatch {
        expires_in: Some("2d".into()),
        ..KeyPatch::from(key_spec("o"))
    };
    let soon = s.keys.create(soon, &"t".into()).await.expect("soon");
    let later = KeyPatch {
        expires_in: Some("30d".into()),
        ..KeyPatch::from(key_spec("o"))
    };
    s.keys.create(later, &"t".into()).await.expect("later");
    s.keys
        .create(key_spec("o"), &"t".into())
        .await
        .expect("never");

    let config = cfg.build();
    let stores = keygate::store::open(&config.store).await.expect("store");
    let metrics = std::sync::Arc::new(keygate::metrics::Metrics::new().expect("metrics"));
    let worker = keygate::webhooks::worker::Worker::new(
        &config.webhooks,
        stores.webhooks.clone(),
        metrics,
        Clock::system(),
    )
    .expect("worker");
    assert_eq!(worker.scan_expiring().await.expect("scan"), 1);
    assert_eq!(worker.scan_expiring().await.expect("scan again"), 0);
    // The gateway's own worker scans at start: still one event.
    let gw = cfg.start().await;
    assert!(until(10, || async { r.events().len() == 1 }).await);
    let e = r.events().into_values().next().expect("event");
    assert_eq!(e["type"], "key.expiring");
    assert_eq!(e["data"]["key_id"], soon.key.id.to_string());
    assert!(
        until(5, || async {
            deliveries(gw.admin, "event_type=key.expiring").await.len() == 1
        })
        .await
    );
    gw.stop().await;
}
