//! Decisions through the admin API: rotation headers and marked usage, verify
//! parity with the proxy for every code, a change enforced by another gateway.

use super::*;

async fn rotation_tells_the_client_and_marks_usage(kind: StoreKind) {
    let up = Upstream::start("a").await;
    let (cfg, gw) = setup(&up, kind).await;
    let a = admin(&gw);
    let created = a
        .create(json!({"owner_id": "acme", "scopes": ["orders:read"]}))
        .await;
    let id = created["key"]["id"].as_str().expect("id");
    let old = created["secret"].as_str().expect("secret").to_string();
    let (s, rotated) = a
        .post(&format!("/v1/keys/{id}/rotate"), json!({"grace": "1h"}))
        .await;
    assert_eq!(s, StatusCode::OK, "{rotated}");
    let new = rotated["secret"].as_str().expect("secret").to_string();
    assert_eq!(rotated["previous"]["id"], id);
    assert_eq!(rotated["previous"]["rotated_to"], rotated["key"]["id"]);

    let call = |k: String| {
        let req = gw.get("/orders/1").header("x-api-key", k);
        async move { req.send().await.expect("send") }
    };
    let ok = eventually(Duration::from_secs(3), || async {
        call(new.clone()).await.status() == 200
    })
    .await;
    assert!(ok.is_some());
    let resp = call(old.clone()).await;
    assert_eq!(resp.status(), 200);
    let dep = resp
        .headers()
        .get("deprecation")
        .expect("Deprecation header")
        .to_str()
        .expect("ascii")
        .to_string();
    assert!(
        dep.starts_with('@') && dep[1..].parse::<i64>().is_ok(),
        "{dep}"
    );
    let sunset = resp
        .headers()
        .get("sunset")
        .expect("Sunset header")
        .to_str()
        .expect("ascii")
        .to_string();
    let sunset_at =
        chrono::DateTime::parse_from_rfc2822(&sunset.replace("GMT", "+0000")).expect("HTTP-date");
    let expires: chrono::DateTime<chrono::Utc> = rotated["previous"]["expires_at"]
        .as_str()
        .expect("expires")
        .parse()
        .expect("time");
    assert_eq!(sunset_at.timestamp(), expires.timestamp());
    let fresh = call(new.clone()).await;
    assert!(
        fresh.headers().get("deprecation").is_none() && fresh.headers().get("sunset").is_none()
    );

    let store = cfg.store().await;
    let old_id = uuid::Uuid::parse_str(id).expect("uuid");
    let marked = eventually(Duration::from_secs(5), || async {
        let q = keygate::store::UsageQuery {
            key_id: Some(old_id),
            limit: 100,
            ..Default::default()
        };
        let rows = store.usage_events(&q).await.expect("usage");
        rows.iter().filter(|r| r.deprecated_key).count() == 1
    })
    .await;
    assert!(
        marked.is_some(),
        "the old key's use is marked in usage records"
    );
    gw.stop().await;
}

/// Secrets for a key per verify code (and `unknown`, never created).
struct Keys {
    valid: String,
    disabled: String,
    revoked: String,
    unscoped: String,
    other_route: String,
    wrong_ip: String,
    limited: String,
    unknown: String,
}

/// Creates a key per code, revoking one last; returns them once the gateway
/// shows the revocation.
async fn create_keys(a: &Admin<'_>) -> Keys {
    let gw = a.gw;
    let mk = |body: Value| {
        let a = &a;
        async move {
            a.create(body).await["secret"]
                .as_str()
                .expect("secret")
                .to_string()
        }
    };
    let valid =
        mk(json!({"owner_id": "v", "scopes": ["orders:read"], "rate_limits": {"hour": 1000}}))
            .await;
    let disabled = mk(json!({"owner_id": "d", "scopes": ["orders:read"], "enabled": false})).await;
    let revoked_resp = a
        .create(json!({"owner_id": "r", "scopes": ["orders:read"]}))
        .await;
    let revoked = revoked_resp["secret"].as_str().expect("secret").to_string();
    let unscoped = mk(json!({"owner_id": "u", "scopes": ["users:read"]})).await;
    let other_route =
        mk(json!({"owner_id": "o", "scopes": ["*"], "allowed_routes": ["other"]})).await;
    let wrong_ip =
        mk(json!({"owner_id": "i", "scopes": ["*"], "allowed_cidrs": ["10.0.0.0/8"]})).await;
    let limited = mk(json!({"owner_id": "l", "scopes": ["*"], "rate_limits": {"minute": 1}})).await;
    let unknown = keygate::auth::key::generate("kg")
        .expect("key")
        .expose()
        .to_string();
    // Revoke last: once the gateway shows it, it has every earlier change.
    a.post(
        &format!(
            "/v1/keys/{}/revoke",
            revoked_resp["key"]["id"].as_str().expect("id")
        ),
        json!({}),
    )
    .await;
    // Let the table catch up with the admin changes (the last one was the revocation).
    let ready = eventually(Duration::from_secs(3), || async {
        let resp = gw
            .get("/orders")
            .header("x-api-key", &revoked)
            .send()
            .await
            .expect("send");
        resp.json::<Value>()
            .await
            .ok()
            .is_some_and(|v| v["error"]["code"] == "revoked_key")
    })
    .await;
    assert!(ready.is_some());
    Keys {
        valid,
        disabled,
        revoked,
        unscoped,
        other_route,
        wrong_ip,
        limited,
        unknown,
    }
}

/// Verify and the proxy give the same code for every key.
async fn verify_matches_the_proxy(a: &Admin<'_>, keys: &Keys) {
    let gw = a.gw;
    let Keys {
        valid,
        disabled,
        revoked,
        unscoped,
        other_route,
        wrong_ip,
        limited,
        unknown,
    } = keys;
    for (key, want) in [
        (valid.as_str(), "ok"),
        (disabled.as_str(), "disabled_key"),
        (revoked.as_str(), "revoked_key"),
        (unscoped.as_str(), "insufficient_scope"),
        (other_route.as_str(), "route_not_allowed"),
        (wrong_ip.as_str(), "ip_not_allowed"),
        (unknown.as_str(), "invalid_key"),
        ("kg_malformed", "invalid_key"),
        (limited.as_str(), "ok"),
        (limited.as_str(), "rate_limited"),
    ] {
        let (s, v) = a
            .post(
                "/v1/verify",
                json!({"key": key, "route": "orders", "ip": "127.0.0.1"}),
            )
            .await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(v["code"], want, "verify {want}: {v}");
        assert_eq!(v["valid"], want == "ok");
        let resp = gw
            .get("/orders/x")
            .header("x-api-key", key)
            .send()
            .await
            .expect("send");
        let proxy_code = if resp.status() == 200 {
            "ok".to_string()
        } else {
            resp.json::<Value>().await.expect("json")["error"]["code"]
                .as_str()
                .expect("code")
                .to_string()
        };
        // The rate-limited key's second proxy call is over the limit too.
        let expected_proxy = if key == limited && want == "ok" {
            "rate_limited"
        } else {
            want
        };
        assert_eq!(proxy_code, expected_proxy, "proxy parity for {want}");
    }
}

/// Verify's details, its optional fields, and bad input.
async fn verify_details_and_bad_input(a: &Admin<'_>, keys: &Keys) {
    let Keys {
        valid, wrong_ip, ..
    } = keys;
    let (_, v) = a
        .post(
            "/v1/verify",
            json!({"key": valid, "route": "orders", "ip": "127.0.0.1"}),
        )
        .await;
    assert_eq!(v["key"]["owner_id"], "v");
    assert_eq!(v["rate_limit"]["limit"], 1000);
    let (_, v) = a
        .post("/v1/verify", json!({"key": valid, "route": "nope"}))
        .await;
    assert_eq!(v["code"], "route_not_found");
    let (_, v) = a.post("/v1/verify", json!({"key": wrong_ip})).await;
    assert_eq!(
        v["code"], "ip_not_allowed",
        "an allowlist without an address fails closed"
    );
    let (_, v) = a
        .post(
            "/v1/verify",
            json!({"key": valid, "scopes": ["billing:write"]}),
        )
        .await;
    assert_eq!(
        (v["code"].as_str(), v["required_scopes"].clone()),
        (Some("insufficient_scope"), json!(["billing:write"]))
    );
    let (s, _) = a
        .post("/v1/verify", json!({"key": valid, "ip": "not-an-ip"}))
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    let (s, _) = a.post("/v1/verify", json!({"route": "orders"})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
}

async fn verify_gives_the_proxys_decision_for_every_code(kind: StoreKind) {
    let up = Upstream::start("a").await;
    let (_cfg, gw) = setup(&up, kind).await;
    let a = admin(&gw);
    let keys = create_keys(&a).await;
    verify_matches_the_proxy(&a, &keys).await;
    verify_details_and_bad_input(&a, &keys).await;
    gw.stop().await;
}

async fn an_admin_change_on_one_gateway_is_enforced_by_another_within_a_second(kind: StoreKind) {
    let up = Upstream::start("a").await;
    let (cfg, a_gw) = setup(&up, kind).await;
    let b_gw = cfg.start().await;
    let a = admin(&a_gw);
    let created = a
        .create(json!({"owner_id": "x", "scopes": ["orders:read"]}))
        .await;
    let secret = created["secret"].as_str().expect("secret").to_string();
    let on_b = || async {
        b_gw.get("/orders")
            .header("x-api-key", &secret)
            .send()
            .await
            .expect("send")
            .status()
            .as_u16()
    };
    let took = eventually(Duration::from_secs(3), || async { on_b().await == 200 })
        .await
        .expect("new key reached B");
    assert!(took < Duration::from_secs(1), "creation took {took:?}");
    let id = created["key"]["id"].as_str().expect("id");
    a.post(&format!("/v1/keys/{id}/revoke"), json!({})).await;
    let took = eventually(Duration::from_secs(3), || async { on_b().await == 401 })
        .await
        .expect("revocation reached B");
    assert!(took < Duration::from_secs(1), "revocation took {took:?}");
    a_gw.stop().await;
    b_gw.stop().await;
}

both_stores!(
    rotation_tells_the_client_and_marks_usage,
    verify_gives_the_proxys_decision_for_every_code,
    an_admin_change_on_one_gateway_is_enforced_by_another_within_a_second,
);
