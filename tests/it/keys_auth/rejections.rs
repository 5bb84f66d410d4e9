//! Every rejection code through the proxy, with the key never echoed and only
//! the valid request reaching the upstream.

use std::time::Duration;

use keygate::keys::model::KeySpec;
use keygate::service::{CreatedKey, KeyService};

use super::{call, code};
use crate::harness::{
    StoreKind, TestConfig, TestGateway, Upstream, both_stores, error_code, eventually, key_spec,
};

/// One key for each way of being refused, and one that passes.
struct Keys {
    ok: CreatedKey,
    disabled: CreatedKey,
    revoked: CreatedKey,
    unscoped: CreatedKey,
    other_route: CreatedKey,
    wrong_ip: CreatedKey,
}

/// Creates a key for owner `o`, changed by `change`.
async fn create(svc: &KeyService, actor: &String, change: impl FnOnce(&mut KeySpec)) -> CreatedKey {
    let mut s = key_spec("o");
    change(&mut s);
    svc.create(s, actor).await.expect("create")
}

async fn create_keys(svc: &KeyService, actor: &String) -> Keys {
    Keys {
        ok: create(svc, actor, |s| s.scopes = vec!["orders:read".into()]).await,
        disabled: create(svc, actor, |s| {
            s.enabled = false;
            s.scopes = vec!["*".into()];
        })
        .await,
        revoked: create(svc, actor, |s| s.scopes = vec!["*".into()]).await,
        unscoped: create(svc, actor, |s| s.scopes = vec!["users:read".into()]).await,
        other_route: create(svc, actor, |s| {
            s.scopes = vec!["*".into()];
            s.allowed_routes = vec!["other".into()];
        })
        .await,
        wrong_ip: create(svc, actor, |s| {
            s.scopes = vec!["*".into()];
            s.allowed_cidrs = vec!["10.0.0.0/8".parse().expect("cidr")];
        })
        .await,
    }
}

/// Revokes `revoked` and waits until the gateway refuses it.
async fn revoke(svc: &KeyService, actor: &String, gw: &TestGateway, revoked: &CreatedKey) {
    svc.revoke(revoked.key.id, Some("leaked".into()), actor)
        .await
        .expect("revoke");
    let took = eventually(Duration::from_secs(5), || async {
        call(gw, "/orders", revoked.secret.expose()).await.0 == 401
    })
    .await;
    assert!(took.is_some(), "revocation reached the gateway");
}

/// Each key once against `/orders/7`: the code, a request id, no echoed key.
async fn every_code_once(gw: &TestGateway, keys: &Keys) {
    let Keys {
        ok,
        disabled,
        revoked,
        unscoped,
        other_route,
        wrong_ip,
    } = keys;
    let good = ok.secret.expose().to_string();
    let mut bad_checksum = good.clone().into_bytes();
    let last = bad_checksum.len() - 1;
    bad_checksum[last] = if bad_checksum[last] == b'a' {
        b'b'
    } else {
        b'a'
    };
    let bad_checksum = String::from_utf8(bad_checksum).expect("ascii");
    let unknown = keygate::auth::key::generate("kg").expect("key");

    let resp = gw.get("/orders").send().await.expect("send");
    assert!(resp.headers().contains_key("www-authenticate"));
    let (status, v) = error_code(resp).await;
    assert_eq!((status, code(&v)), (401, "missing_key"));

    for (key, status_want, code_want) in [
        ("kg_malformed", 401, "invalid_key"),
        (bad_checksum.as_str(), 401, "invalid_key"),
        (unknown.expose(), 401, "invalid_key"),
        (revoked.secret.expose(), 401, "revoked_key"),
        (disabled.secret.expose(), 401, "disabled_key"),
        (unscoped.secret.expose(), 403, "insufficient_scope"),
        (other_route.secret.expose(), 403, "route_not_allowed"),
        (wrong_ip.secret.expose(), 403, "ip_not_allowed"),
        (good.as_str(), 200, ""),
    ] {
        let (status, v) = call(gw, "/orders/7", key).await;
        assert_eq!((status, code(&v)), (status_want, code_want), "{v}");
        if status != 200 {
            assert!(v["error"]["request_id"].is_string());
            assert!(
                !v.to_string().contains(key),
                "the key is echoed in the error"
            );
        }
    }
    let (_, v) = call(gw, "/orders/7", unscoped.secret.expose()).await;
    assert_eq!(
        v["error"]["required_scopes"],
        serde_json::json!(["orders:read"])
    );
}

async fn every_rejection_code(kind: StoreKind) {
    let up = Upstream::start("a").await;
    let cfg = TestConfig::new(kind)
        .await
        .upstream("a", &[up.addr], |_| {})
        .route("orders", "/orders", "a", |r| {
            r.scopes = vec!["orders:read".into()]
        })
        .route("other", "/other", "a", |_| {});
    let svc = cfg.keys().await;
    let actor = "test".to_string();
    let keys = create_keys(&svc, &actor).await;
    let gw = cfg.start().await;

    revoke(&svc, &actor, &gw, &keys.revoked).await;
    let upstream_before = up.count();

    every_code_once(&gw, &keys).await;
    assert_eq!(
        up.count() - upstream_before,
        1,
        "only the valid request reached the upstream"
    );
    assert!(
        gw.metric_reaches(
            "keygate_requests_total{outcome=\"insufficient_scope\",route=\"orders\"}",
            2.0
        )
        .await
    );
    gw.stop().await;
}

both_stores!(every_rejection_code,);
