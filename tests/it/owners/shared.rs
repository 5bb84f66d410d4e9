//! What an owner's keys share: its limits (exact across gateways on one
//! Redis), route-cap overrides, forwarded metadata, and its enabled flag.

use std::time::{Duration, Instant};

use keygate::keys::model::KeySpec;
use keygate::owners::OwnerPatch;
use serde_json::json;

use super::*;
use crate::harness::{StoreKind, both_stores, eventually, key_spec};

#[tokio::test]
async fn an_owner_limit_is_shared_by_three_keys_across_two_gateways() {
    let r = redis().await;
    let up = Upstream::start("a").await;
    let cfg = strict_redis(routed(&up, |_| {}).await, &r);
    let s = cfg.services().await;
    let shared = OwnerPatch {
        id: Some("acme".into()),
        rate_limits: Some(limit(40)),
        ..OwnerPatch::default()
    };
    owner(&s, shared).await;
    let mut keys = Vec::new();
    for _ in 0..3 {
        // Each key's own limit is far above the owner's.
        let spec = KeySpec {
            rate_limits: limit(1000),
            ..key_spec("acme")
        };
        keys.push(key(&s, spec).await);
    }
    let secrets: Vec<&str> = keys.iter().map(|k| k.secret.expose()).collect();
    let other = key(&s, key_spec("other")).await;
    let (a, b) = tokio::join!(cfg.start(), cfg.start());
    let statuses = burst(&[&a, &b], "/x", &secrets, 300, 64).await;
    assert_eq!((count(&statuses, 200), count(&statuses, 429)), (40, 260));
    // Another owner's key is not held back by acme's limit.
    assert_eq!(call(&a, "/x", other.secret.expose()).await.0, 200);
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn route_limits_on_keys_and_owners_replace_the_route_cap() {
    let up = Upstream::start("a").await;
    let cfg = routed(&up, |r| {
        r.rate_limits = [("minute".to_string(), 2)].into();
    })
    .await;
    let s = cfg.services().await;
    let plan = |n| [("r".to_string(), limit(n))].into();
    owner(
        &s,
        OwnerPatch {
            id: Some("o2".into()),
            route_limits: Some(plan(3)),
            ..OwnerPatch::default()
        },
    )
    .await;
    let plain = key(&s, key_spec("o1")).await;
    let raised = key(
        &s,
        KeySpec {
            route_limits: plan(5),
            ..key_spec("o1")
        },
    )
    .await;
    let by_owner = key(&s, key_spec("o2")).await;
    let own_wins = key(
        &s,
        KeySpec {
            route_limits: plan(1),
            ..key_spec("o2")
        },
    )
    .await;
    let gw = cfg.start().await;
    for (k, want) in [(&plain, 2), (&raised, 5), (&by_owner, 3), (&own_wins, 1)] {
        let statuses = burst(&[&gw], "/x", &[k.secret.expose()], 8, 1).await;
        assert_eq!(count(&statuses, 200), want, "{:?}", k.key.spec.route_limits);
    }
    gw.stop().await;
}

#[tokio::test]
async fn owner_metadata_is_forwarded_and_a_keys_own_value_wins() {
    let up = Upstream::start("a").await;
    let cfg = routed(&up, |_| {})
        .await
        .with(|f| f.gateway.forward_metadata = vec!["plan".into(), "tier".into()]);
    let s = cfg.services().await;
    let meta = |pairs: &[(&str, &str)]| {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let acme = OwnerPatch {
        id: Some("acme".into()),
        metadata: Some(meta(&[("plan", "gold"), ("tier", "t1")])),
        ..OwnerPatch::default()
    };
    owner(&s, acme).await;
    let k = key(
        &s,
        KeySpec {
            metadata: meta(&[("plan", "silver")]),
            ..key_spec("acme")
        },
    )
    .await;
    let gw = cfg.start().await;
    assert_eq!(call(&gw, "/x", k.secret.expose()).await.0, 200);
    let seen = up.last();
    assert_eq!(seen.header("x-keygate-meta-plan"), Some("silver"));
    assert_eq!(seen.header("x-keygate-meta-tier"), Some("t1"));
    gw.stop().await;
}

async fn a_disabled_owner_is_refused_by_two_gateways_within_a_second(kind: StoreKind) {
    let up = Upstream::start("a").await;
    // A long poll interval: only the change feed's push (or SQLite's 500 ms poll) is fast.
    let cfg = TestConfig::new(kind)
        .await
        .with(|f| f.keys.sync_interval = Some("1h".into()))
        .upstream("a", &[up.addr], |_| {})
        .route("r", "/", "a", |_| {});
    let s = cfg.services().await;
    let k = key(&s, key_spec("acme")).await;
    let secret = k.secret.expose();
    let (a, b) = tokio::join!(cfg.start(), cfg.start());
    assert_eq!(call(&a, "/x", secret).await.0, 200);
    assert_eq!(call(&b, "/x", secret).await.0, 200);
    let off = OwnerPatch {
        enabled: Some(false),
        ..OwnerPatch::default()
    };
    s.owners
        .update("acme", off, &ACTOR.into())
        .await
        .expect("disable");
    let disabled_at = Instant::now();
    let refused = |gw: &TestGateway| {
        let req = gw.get("/x").header("x-api-key", secret);
        async move {
            let resp = req.send().await.expect("send");
            let status = resp.status().as_u16();
            let body: serde_json::Value = resp.json().await.unwrap_or(json!({}));
            status == 401 && body["error"]["code"] == "owner_disabled"
        }
    };
    let (ta, tb) = tokio::join!(
        eventually(Duration::from_secs(3), || refused(&a)),
        eventually(Duration::from_secs(3), || refused(&b)),
    );
    let total = disabled_at.elapsed();
    assert!(
        ta.is_some() && tb.is_some(),
        "both gateways refuse the owner's key"
    );
    assert!(
        total < Duration::from_secs(1),
        "owner disable took {total:?}"
    );
    println!("owner disable enforced by both gateways after {ta:?} / {tb:?} ({kind:?})");
    let on = OwnerPatch {
        enabled: Some(true),
        ..OwnerPatch::default()
    };
    s.owners
        .update("acme", on, &ACTOR.into())
        .await
        .expect("enable");
    let back = eventually(Duration::from_secs(3), || async {
        call(&a, "/x", secret).await.0 == 200
    })
    .await;
    assert!(back.is_some(), "re-enabled");
    a.stop().await;
    b.stop().await;
}

both_stores!(a_disabled_owner_is_refused_by_two_gateways_within_a_second);
