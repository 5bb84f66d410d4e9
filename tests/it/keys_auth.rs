//! Authentication and authorization through the real proxy: every rejection
//! code, the identity headers, scopes, CIDRs, trusted proxies, expiry, rotation.

use crate::harness::{StoreKind, both_stores};
use std::collections::BTreeMap;
use std::time::Duration;

use crate::harness::{TestConfig, TestGateway, Upstream, error_code, eventually, key_spec};

async fn call(gw: &TestGateway, path: &str, key: &str) -> (u16, serde_json::Value) {
    let resp = gw
        .get(path)
        .header("x-api-key", key)
        .send()
        .await
        .expect("send");
    let status = resp.status().as_u16();
    let body = resp.text().await.expect("body");
    (
        status,
        serde_json::from_str(&body).unwrap_or(serde_json::Value::String(body)),
    )
}

fn code(v: &serde_json::Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("")
}

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
    let ok = svc
        .create(
            {
                let mut s = key_spec("o");
                s.scopes = vec!["orders:read".into()];
                s
            },
            &actor,
        )
        .await
        .expect("create");
    let disabled = svc
        .create(
            {
                let mut s = key_spec("o");
                s.enabled = false;
                s.scopes = vec!["*".into()];
                s
            },
            &actor,
        )
        .await
        .expect("create");
    let revoked = svc
        .create(
            {
                let mut s = key_spec("o");
                s.scopes = vec!["*".into()];
                s
            },
            &actor,
        )
        .await
        .expect("create");
    let unscoped = svc
        .create(
            {
                let mut s = key_spec("o");
                s.scopes = vec!["users:read".into()];
                s
            },
            &actor,
        )
        .await
        .expect("create");
    let other_route = svc
        .create(
            {
                let mut s = key_spec("o");
                s.scopes = vec!["*".into()];
                s.allowed_routes = vec!["other".into()];
                s
            },
            &actor,
        )
        .await
        .expect("create");
    let wrong_ip = svc
        .create(
            {
                let mut s = key_spec("o");
                s.scopes = vec!["*".into()];
                s.allowed_cidrs = vec!["10.0.0.0/8".parse().expect("cidr")];
                s
            },
            &actor,
        )
        .await
        .expect("create");
    let gw = cfg.start().await;

    svc.revoke(revoked.key.id, Some("leaked".into()), &actor)
        .await
        .expect("revoke");
    let took = eventually(Duration::from_secs(5), || async {
        call(&gw, "/orders", revoked.secret.expose()).await.0 == 401
    })
    .await;
    assert!(took.is_some(), "revocation reached the gateway");
    let upstream_before = up.count();

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
        let (status, v) = call(&gw, "/orders/7", key).await;
        assert_eq!((status, code(&v)), (status_want, code_want), "{v}");
        if status != 200 {
            assert!(v["error"]["request_id"].is_string());
            assert!(
                !v.to_string().contains(key),
                "the key is echoed in the error"
            );
        }
    }
    let (_, v) = call(&gw, "/orders/7", unscoped.secret.expose()).await;
    assert_eq!(
        v["error"]["required_scopes"],
        serde_json::json!(["orders:read"])
    );
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

async fn scope_wildcards(kind: StoreKind) {
    let up = Upstream::start("a").await;
    let cfg = TestConfig::new(kind)
        .await
        .upstream("a", &[up.addr], |_| {})
        .route("w", "/w", "a", |r| {
            r.scopes = vec!["orders:items:write".into()]
        });
    let svc = cfg.keys().await;
    let mut keys = Vec::new();
    for scopes in [
        vec!["orders:*"],
        vec!["*"],
        vec!["orders:items:write"],
        vec!["orders:read"],
        vec!["orders:items:*"],
        vec!["order:*"],
    ] {
        let mut s = key_spec("o");
        s.scopes = scopes.iter().map(|x| x.to_string()).collect();
        keys.push(svc.create(s, &"t".into()).await.expect("create"));
    }
    let gw = cfg.start().await;
    let got: Vec<u16> = futures::future::join_all(
        keys.iter()
            .map(|k| async { call(&gw, "/w", k.secret.expose()).await.0 }),
    )
    .await;
    assert_eq!(got, vec![200, 200, 200, 403, 200, 403]);
    gw.stop().await;
}

async fn cidr_allowlists_ipv4_ipv6_and_mapped_addresses(kind: StoreKind) {
    let up = Upstream::start("a").await;
    let base = TestConfig::new(kind)
        .await
        .upstream("a", &[up.addr], |_| {})
        .route("r", "/", "a", |_| {});
    let svc = base.keys().await;
    let make = |cidrs: &[&str]| {
        let mut s = key_spec("o");
        s.allowed_cidrs = cidrs.iter().map(|c| c.parse().expect("cidr")).collect();
        s
    };
    let v4_ok = svc
        .create(make(&["127.0.0.0/8"]), &"t".into())
        .await
        .expect("create");
    let v4_no = svc
        .create(make(&["10.0.0.0/8", "192.168.0.0/16"]), &"t".into())
        .await
        .expect("create");
    let v6_ok = svc
        .create(make(&["::1/128"]), &"t".into())
        .await
        .expect("create");
    let v6_no = svc
        .create(make(&["2001:db8::/32"]), &"t".into())
        .await
        .expect("create");

    // IPv6 listener, IPv6 client.
    let gw6 = TestConfig::with_store(base.db_url())
        .with(|f| f.gateway.listen = Some("[::1]:0".into()))
        .upstream("a", &[up.addr], |_| {})
        .route("r", "/", "a", |_| {})
        .start()
        .await;
    assert_eq!(call(&gw6, "/", v6_ok.secret.expose()).await.0, 200);
    assert_eq!(
        code(&call(&gw6, "/", v6_no.secret.expose()).await.1),
        "ip_not_allowed"
    );
    assert_eq!(
        code(&call(&gw6, "/", v4_ok.secret.expose()).await.1),
        "ip_not_allowed"
    );
    gw6.stop().await;

    // Dual-stack listener, IPv4 client: the peer is ::ffff:127.0.0.1 and must
    // match IPv4 CIDRs.
    let dual = TestConfig::with_store(base.db_url())
        .with(|f| f.gateway.listen = Some("[::]:0".into()))
        .upstream("a", &[up.addr], |_| {})
        .route("r", "/", "a", |_| {})
        .start()
        .await;
    let url = format!("http://127.0.0.1:{}/", dual.proxy.port());
    let status = |k: String| {
        let client = dual.client.clone();
        let url = url.clone();
        async move {
            client
                .get(url)
                .header("x-api-key", k)
                .send()
                .await
                .expect("send")
                .status()
                .as_u16()
        }
    };
    assert_eq!(status(v4_ok.secret.expose().into()).await, 200);
    assert_eq!(status(v4_no.secret.expose().into()).await, 403);
    assert_eq!(status(v6_ok.secret.expose().into()).await, 403);
    dual.stop().await;
}

async fn forwarded_for_is_believed_only_from_trusted_proxies(kind: StoreKind) {
    let up = Upstream::start("a").await;
    let db = TestConfig::new(kind).await;
    let svc = db.keys().await;
    let mut s = key_spec("o");
    s.allowed_cidrs = vec!["203.0.113.0/24".parse().expect("cidr")];
    let k = svc.create(s, &"t".into()).await.expect("create");
    let behind_lb = TestConfig::with_store(db.db_url())
        .with(|f| f.gateway.trusted_proxies = vec!["127.0.0.0/8".into()])
        .upstream("a", &[up.addr], |_| {})
        .route("r", "/", "a", |_| {})
        .start()
        .await;
    let exposed = TestConfig::with_store(db.db_url())
        .upstream("a", &[up.addr], |_| {})
        .route("r", "/", "a", |_| {})
        .start()
        .await;
    let with_xff = |gw: &TestGateway, xff: &str| {
        let req = gw
            .get("/")
            .header("x-api-key", k.secret.expose())
            .header("x-forwarded-for", xff);
        async move { req.send().await.expect("send").status().as_u16() }
    };
    assert_eq!(with_xff(&behind_lb, "203.0.113.9").await, 200);
    assert_eq!(
        with_xff(&behind_lb, "203.0.113.9, 127.0.0.5").await,
        200,
        "trusted hops are skipped"
    );
    assert_eq!(
        with_xff(&behind_lb, "203.0.113.9, 198.51.100.1").await,
        403,
        "the right-most untrusted entry counts"
    );
    assert_eq!(
        with_xff(&exposed, "203.0.113.9").await,
        403,
        "spoofed XFF from an untrusted peer is ignored"
    );
    behind_lb.stop().await;
    exposed.stop().await;
}

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
    valid_key_is_forwarded_with_exactly_the_identity_headers,
    bearer_keys_are_accepted_when_enabled_and_stripped,
    every_rejection_code,
    scope_wildcards,
    cidr_allowlists_ipv4_ipv6_and_mapped_addresses,
    forwarded_for_is_believed_only_from_trusted_proxies,
    expiry_is_reached_while_running,
    rotation_keeps_the_old_secret_working_for_the_grace_period,
    max_per_owner_is_enforced,
);
