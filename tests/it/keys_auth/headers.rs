//! What reaches the upstream for a valid key: exactly the identity headers,
//! bearer keys stripped, never a key from the query string.

use std::collections::BTreeMap;

use super::{call, code};
use crate::harness::{StoreKind, TestConfig, Upstream, both_stores, error_code, key_spec};

async fn valid_key_is_forwarded_with_exactly_the_identity_headers(kind: StoreKind) {
    let up = Upstream::start("a").await;
    let cfg = TestConfig::new(kind)
        .await
        .with(|f| f.gateway.forward_metadata = vec!["plan".into(), "region".into()])
        .upstream("a", &[up.addr], |_| {})
        .route("orders", "/orders", "a", |r| {
            r.scopes = vec!["orders:read".into()]
        });
    let svc = cfg.keys().await;
    let mut s = key_spec("acme");
    s.scopes = vec!["orders:read".into(), "users:write".into()];
    s.metadata = BTreeMap::from([
        ("plan".into(), "gold".into()),
        ("internal".into(), "secret-ish".into()),
    ]);
    let created = svc.create(s, &"test".into()).await.expect("create");
    let gw = cfg.start().await;

    let (status, body) = call(&gw, "/orders/1", created.secret.expose()).await;
    assert_eq!(status, 200, "{body}");
    let seen = up.last();
    let want = BTreeMap::from([
        ("x-keygate-key-id".to_string(), created.key.id.to_string()),
        ("x-keygate-owner-id".to_string(), "acme".to_string()),
        (
            "x-keygate-scopes".to_string(),
            "orders:read users:write".to_string(),
        ),
        ("x-keygate-meta-plan".to_string(), "gold".to_string()),
    ]);
    assert_eq!(seen.keygate_headers(), want);
    assert_eq!(
        seen.header("x-api-key"),
        None,
        "the key must not reach the upstream"
    );
    assert!(!format!("{:?}", seen.headers).contains(created.secret.expose()));
    gw.stop().await;
}

async fn bearer_keys_are_accepted_when_enabled_and_stripped(kind: StoreKind) {
    let up = Upstream::start("a").await;
    let cfg = TestConfig::new(kind)
        .await
        .with(|f| f.gateway.accept_bearer = Some(true))
        .upstream("a", &[up.addr], |_| {})
        .route("r", "/", "a", |_| {});
    let created = cfg
        .keys()
        .await
        .create(key_spec("o"), &"test".into())
        .await
        .expect("create");
    let gw = cfg.start().await;
    let resp = gw
        .get("/x")
        .bearer_auth(created.secret.expose())
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
    assert_eq!(up.last().header("authorization"), None);
    // Keys in the query string are never accepted.
    let (status, v) = error_code(
        gw.get(&format!("/x?api_key={}", created.secret.expose()))
            .send()
            .await
            .expect("send"),
    )
    .await;
    assert_eq!((status, code(&v)), (401, "missing_key"));
    gw.stop().await;
}

both_stores!(
    valid_key_is_forwarded_with_exactly_the_identity_headers,
    bearer_keys_are_accepted_when_enabled_and_stripped,
);
