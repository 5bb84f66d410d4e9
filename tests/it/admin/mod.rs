//! The admin API: auth, every key endpoint, pagination under inserts, partial
//! updates and errors. `decisions`: rotation that tells the client, verify
//! parity with the proxy, cross-gateway enforcement. `audit`: usage and audit
//! endpoints, the tamper-evident chain, schemathesis.

mod audit;
mod decisions;

use crate::harness::{StoreKind, both_stores};
use std::collections::HashSet;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::binary;
use crate::harness::gateway::HASH_SECRET;
use crate::harness::{TestConfig, TestGateway, Upstream, eventually};

const TOKEN: &str = "admin-token-one";

struct Admin<'a> {
    gw: &'a TestGateway,
    token: Option<&'a str>,
}

impl Admin<'_> {
    fn req(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let r = self.gw.client.request(method, self.gw.admin_url(path));
        match self.token {
            Some(t) => r.bearer_auth(t),
            None => r,
        }
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut r = self.req(method, path);
        if let Some(b) = body {
            r = r.json(&b);
        }
        let resp = r.send().await.expect("admin request");
        let status = resp.status();
        let text = resp.text().await.expect("body");
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.send(reqwest::Method::POST, path, Some(body)).await
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.send(reqwest::Method::GET, path, None).await
    }

    async fn create(&self, body: Value) -> Value {
        let (s, v) = self.post("/v1/keys", body).await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        v
    }
}

fn admin(gw: &TestGateway) -> Admin<'_> {
    Admin {
        gw,
        token: Some(TOKEN),
    }
}

async fn setup(up: &Upstream, kind: StoreKind) -> (TestConfig, TestGateway) {
    let cfg = TestConfig::new(kind)
        .await
        .env("KEYGATE_ADMIN_TOKEN", &format!("{TOKEN}, admin-token-two"))
        .with(|f| f.keys.max_per_owner = Some(5))
        .upstream("a", &[up.addr], |_| {})
        .route("orders", "/orders", "a", |r| {
            r.scopes = vec!["orders:read".into()]
        })
        .route("other", "/other", "a", |_| {});
    let gw = cfg.start().await;
    (cfg, gw)
}

async fn tokens_are_required_and_the_api_is_off_without_one(kind: StoreKind) {
    let up = Upstream::start("a").await;
    let (_cfg, gw) = setup(&up, kind).await;
    let anon = Admin {
        gw: &gw,
        token: None,
    };
    let (s, v) = anon.get("/v1/keys").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(v["error"]["code"], "unauthorized");
    assert!(v["error"]["request_id"].is_string());
    let resp = anon
        .req(reqwest::Method::GET, "/v1/keys")
        .send()
        .await
        .expect("send");
    assert!(
        resp.headers()["www-authenticate"]
            .to_str()
            .expect("ascii")
            .starts_with("Bearer")
    );
    let wrong = Admin {
        gw: &gw,
        token: Some("admin-token-on"),
    };
    assert_eq!(wrong.get("/v1/keys").await.0, StatusCode::UNAUTHORIZED);
    let second = Admin {
        gw: &gw,
        token: Some("admin-token-two"),
    };
    assert_eq!(
        second.get("/v1/keys").await.0,
        StatusCode::OK,
        "several tokens, comma-separated"
    );
    gw.stop().await;

    let off = TestConfig::new(kind)
        .await
        .upstream("a", &[up.addr], |_| {})
        .route("r", "/", "a", |_| {})
        .start()
        .await;
    let (s, v) = admin(&off).get("/v1/keys").await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("admin_api_disabled"))
    );
    for path in ["/healthz", "/readyz", "/metrics", "/openapi.json"] {
        assert_eq!(
            off.client
                .get(off.admin_url(path))
                .send()
                .await
                .expect("send")
                .status(),
            200,
            "{path} stays up"
        );
    }
    off.stop().await;
}

async fn key_endpoints_end_to_end(kind: StoreKind) {
    let up = Upstream::start("a").await;
    let (_cfg, gw) = setup(&up, kind).await;
    let a = admin(&gw);
    let created = a
        .create(json!({"owner_id": "acme", "name": "one", "scopes": ["orders:read"], "rate_limits": {"minute": 100},
                       "metadata": {"plan": "gold"}, "tags": ["team-a"], "expires_in": "30d"}))
        .await;
    let id = created["key"]["id"].as_str().expect("id").to_string();
    let secret = created["secret"].as_str().expect("secret").to_string();
    assert!(keygate::auth::key::parse(&secret).is_ok());
    assert_eq!(created["key"]["status"], "active");

    let (s, got) = a.get(&format!("/v1/keys/{id}")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(got["name"], "one");
    assert!(
        !got.to_string().contains(&secret),
        "the secret is shown only at creation"
    );

    // Partial update: only the given fields change; null clears the expiry.
    let (s, upd) = a
        .send(
            reqwest::Method::PATCH,
            &format!("/v1/keys/{id}"),
            Some(json!({"name": "renamed", "expires_at": null})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{upd}");
    assert_eq!(upd["name"], "renamed");
    assert_eq!(upd["expires_at"], Value::Null);
    assert_eq!(upd["scopes"], json!(["orders:read"]));
    assert_eq!(upd["rate_limits"], json!({"minute": 100}));
    let (_, upd) = a
        .send(
            reqwest::Method::PATCH,
            &format!("/v1/keys/{id}"),
            Some(json!({"scopes": [], "enabled": false})),
        )
        .await;
    assert_eq!(
        (upd["scopes"].clone(), upd["status"].clone()),
        (json!([]), json!("disabled"))
    );

    // Bad input: the field's path, 400 for broken JSON, 422 for bad fields.
    let (s, v) = a
        .send(
            reqwest::Method::PATCH,
            &format!("/v1/keys/{id}"),
            Some(json!({"rate_limits": {"minute": "lots"}})),
        )
        .await;
    assert_eq!(
        (s, v["error"]["fields"][0]["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("rate_limits.minute"))
    );
    let (s, v) = a
        .send(
            reqwest::Method::PATCH,
            &format!("/v1/keys/{id}"),
            Some(json!({"colour": "red"})),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .expect("msg")
            .contains("colour")
    );
    let resp = a
        .req(reqwest::Method::POST, "/v1/keys")
        .header("content-type", "application/json")
        .body("{\"owner_id\":")
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let v: Value = resp.json().await.expect("json");
    assert_eq!(v["error"]["code"], "invalid_json");
    let (s, v) = a.post("/v1/keys", json!({"owner_id": "acme", "scopes": ["ok:read", "Bad Scope"], "allowed_cidrs": ["10.0.0.1/8"]})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    let fields: Vec<&str> = v["error"]["fields"]
        .as_array()
        .expect("fields")
        .iter()
        .filter_map(|f| f["field"].as_str())
        .collect();
    assert_eq!(fields, vec!["scopes[1]", "allowed_cidrs[0]"]);

    // 404s.
    let missing = uuid::Uuid::now_v7();
    for (m, path) in [
        (reqwest::Method::GET, format!("/v1/keys/{missing}")),
        (reqwest::Method::PATCH, format!("/v1/keys/{missing}")),
        (reqwest::Method::POST, format!("/v1/keys/{missing}/revoke")),
        (reqwest::Method::POST, format!("/v1/keys/{missing}/rotate")),
        (reqwest::Method::DELETE, format!("/v1/keys/{missing}")),
        (reqwest::Method::GET, format!("/v1/keys/{missing}/usage")),
        (reqwest::Method::GET, "/v1/keys/not-a-uuid".to_string()),
        (reqwest::Method::GET, "/v1/nothing".to_string()),
    ] {
        let body = (m == reqwest::Method::PATCH).then(|| json!({"name": "x"}));
        let (s, v) = a.send(m.clone(), &path, body).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{m} {path}: {v}");
        assert_eq!(v["error"]["code"], "not_found");
    }

    // 409 at max_per_owner (5): one exists.
    for _ in 0..4 {
        a.create(json!({"owner_id": "acme"})).await;
    }
    let (s, v) = a.post("/v1/keys", json!({"owner_id": "acme"})).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("conflict"))
    );

    // Revoke with a reason; revoked keys cannot be changed.
    let (s, r) = a
        .post(
            &format!("/v1/keys/{id}/revoke"),
            json!({"reason": "leaked"}),
        )
        .await;
    assert_eq!(
        (s, r["status"].as_str(), r["revoked_reason"].as_str()),
        (StatusCode::OK, Some("revoked"), Some("leaked"))
    );
    let (s, _) = a
        .send(
            reqwest::Method::PATCH,
            &format!("/v1/keys/{id}"),
            Some(json!({"name": "x"})),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT);

    // List filters.
    let (_, revoked) = a.get("/v1/keys?owner_id=acme&status=revoked").await;
    assert_eq!(revoked["keys"].as_array().map(Vec::len), Some(1));
    let (_, tagged) = a.get("/v1/keys?tag=team-a").await;
    assert_eq!(tagged["keys"][0]["id"], id.as_str());
    let (s, _) = a.get("/v1/keys?status=sideways").await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);

    let (s, _) = a
        .send(reqwest::Method::DELETE, &format!("/v1/keys/{id}"), None)
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_eq!(
        a.get(&format!("/v1/keys/{id}")).await.0,
        StatusCode::NOT_FOUND
    );
    gw.stop().await;
}

async fn pagination_stays_stable_while_keys_are_added(kind: StoreKind) {
    let up = Upstream::start("a").await;
    let (_cfg, gw) = setup(&up, kind).await;
    let a = admin(&gw);
    let mut originals = HashSet::new();
    for i in 0..23 {
        let k = a.create(json!({"owner_id": format!("owner-{i}")})).await;
        originals.insert(k["key"]["id"].as_str().expect("id").to_string());
    }
    let mut seen: Vec<String> = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/keys?limit=7&cursor={c}"),
            None => "/v1/keys?limit=7".to_string(),
        };
        let (s, page) = a.get(&path).await;
        assert_eq!(s, StatusCode::OK, "{page}");
        seen.extend(
            page["keys"]
                .as_array()
                .expect("keys")
                .iter()
                .map(|k| k["id"].as_str().expect("id").to_string()),
        );
        pages += 1;
        // Keys added between pages must not shift or repeat the others.
        a.create(json!({"owner_id": format!("late-{pages}")})).await;
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
        assert!(pages < 20, "pagination does not end");
    }
    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "no key appears twice");
    assert!(
        originals.iter().all(|id| unique.contains(id)),
        "every key that existed is listed"
    );
    gw.stop().await;
}

both_stores!(
    tokens_are_required_and_the_api_is_off_without_one,
    key_endpoints_end_to_end,
    pagination_stays_stable_while_keys_are_added,
);
