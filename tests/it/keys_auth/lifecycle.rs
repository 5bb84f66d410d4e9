//! A key's life in the store: expiry reached while the gateway runs, rotation
//! with a grace period, the per-owner cap.

use std::time::Duration;

use super::{call, code};
use crate::harness::{StoreKind, TestConfig, Upstream, both_stores, eventually, key_spec};

async fn expiry_is_reached_while_running(kind: StoreKind) {
    let up = Upstream::start("a").await;
    let cfg = TestConfig::new(kind)
        .await
        .upstream("a", &[up.addr], |_| {})
        .route("r", "/", "a", |_| {});
    let s = keygate::keys::model::KeyPatch {
        expires_in: Some("1500ms".into()),
        ..key_spec("o").into()
    };
    let k = cfg
        .keys()
        .await
        .create(s, &"t".into())
        .await
        .expect("create");
    let gw = cfg.start().await;
    assert_eq!(call(&gw, "/", k.secret.expose()).await.0, 200);
    let took = eventually(Duration::from_secs(5), || async {
        call(&gw, "/", k.secret.expose()).await.0 == 401
    })
    .await;
    assert!(took.is_some());
    let (_, v) = call(&gw, "/", k.secret.expose()).await;
    assert_eq!(code(&v), "expired_key");
    let expired_at = v["error"]["expired_at"].as_str().expect("expired_at");
    assert!(
        chrono::DateTime::parse_from_rfc3339(expired_at).is_ok(),
        "{expired_at}"
    );
    gw.stop().await;
}

async fn rotation_keeps_the_old_secret_working_for_the_grace_period(kind: StoreKind) {
    let up = Upstream::start("a").await;
    let cfg = TestConfig::new(kind)
        .await
        .upstream("a", &[up.addr], |_| {})
        .route("r", "/", "a", |_| {});
    let svc = cfg.keys().await;
    let mut s = key_spec("o");
    s.scopes = vec!["a:b".into()];
    let old = svc.create(s, &"t".into()).await.expect("create");
    let gw = cfg.start().await;
    let rotated = svc
        .rotate(old.key.id, Duration::from_secs(2), &"t".into())
        .await
        .expect("rotate");
    assert_ne!(rotated.secret.expose(), old.secret.expose());
    assert_eq!(
        rotated.key.spec.scopes,
        vec!["a:b".to_string()],
        "the new key keeps the fields"
    );
    assert_eq!(rotated.previous.state.rotated_to, Some(rotated.key.id));
    let new_works = eventually(Duration::from_secs(5), || async {
        call(&gw, "/", rotated.secret.expose()).await.0 == 200
    })
    .await;
    assert!(new_works.is_some());
    assert_eq!(
        up.last().header("x-keygate-key-id"),
        Some(rotated.key.id.to_string().as_str())
    );
    assert_eq!(
        call(&gw, "/", old.secret.expose()).await.0,
        200,
        "old key works during grace"
    );
    let old_ends = eventually(Duration::from_secs(5), || async {
        call(&gw, "/", old.secret.expose()).await.0 == 401
    })
    .await;
    assert!(old_ends.is_some(), "old key stops after grace");
    assert_eq!(
        code(&call(&gw, "/", old.secret.expose()).await.1),
        "expired_key"
    );
    assert_eq!(call(&gw, "/", rotated.secret.expose()).await.0, 200);
    gw.stop().await;
}

async fn max_per_owner_is_enforced(kind: StoreKind) {
    // The config owns the (SQLite) database directory: keep it alive.
    let cfg = TestConfig::new(kind)
        .await
        .with(|f| f.keys.max_per_owner = Some(2));
    let svc = cfg.keys().await;
    let a = svc
        .create(key_spec("capped"), &"t".into())
        .await
        .expect("first");
    svc.create(key_spec("capped"), &"t".into())
        .await
        .expect("second");
    let third = svc.create(key_spec("capped"), &"t".into()).await;
    assert!(
        matches!(
            third,
            Err(keygate::service::ServiceError::Store(
                keygate::store::StoreError::OwnerLimit { .. }
            ))
        ),
        "{third:?}"
    );
    svc.create(key_spec("someone-else"), &"t".into())
        .await
        .expect("other owners are not affected");
    svc.revoke(a.key.id, None, &"t".into())
        .await
        .expect("revoke");
    svc.create(key_spec("capped"), &"t".into())
        .await
        .expect("a revoked key frees a slot");
}

both_stores!(
    expiry_is_reached_while_running,
    rotation_keeps_the_old_secret_working_for_the_grace_period,
    max_per_owner_is_enforced,
);
