//! The owner and credits API end to end (both stores), usage reports with
//! credits spent, and admin roles: `read` gets 403 on every change, audit
//! rows name the token.

use std::time::Duration;

use keygate::config::file::AdminTokenSection;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sha2::Digest;

use super::*;
use crate::harness::{StoreKind, both_stores, eventually};

struct Api<'a> {
    gw: &'a TestGateway,
    token: &'a str,
}

impl Api<'_> {
    async fn send(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut r = self
            .gw
            .client
            .request(method, self.gw.admin_url(path))
            .bearer_auth(self.token);
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

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.send(Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.send(Method::POST, path, Some(body)).await
    }
}

const ADMIN: &str = "admin-token-owners";

async fn setup(up: &Upstream, kind: StoreKind) -> (TestConfig, TestGateway) {
    let reader = AdminTokenSection {
        name: "reader".into(),
        role: Some(keygate::config::Role::Read.into()),
        token_sha256: Some(keygate::audit::chain::to_hex(&sha2::Sha256::digest(
            b"reader-token",
        ))),
        token_env: None,
    };
    let writer = AdminTokenSection {
        name: "ci".into(),
        role: Some(keygate::config::Role::Write.into()),
        token_sha256: None,
        token_env: Some("KG_TEST_WRITER".into()),
    };
    let cfg = TestConfig::new(kind)
        .await
        .env("KEYGATE_ADMIN_TOKEN", ADMIN)
        .env("KG_TEST_WRITER", "writer-token")
        .with(|f| f.admin.tokens = vec![reader, writer])
        .upstream("a", &[up.addr], |_| {})
        .route("orders", "/orders", "a", |r| r.cost = Some(2))
        .route("other", "/other", "a", |_| {});
    let gw = cfg.start().await;
    (cfg, gw)
}

async fn owner_and_credit_endpoints_end_to_end(kind: StoreKind) {
    let up = Upstream::start("a").await;
    let (_cfg, gw) = setup(&up, kind).await;
    let a = Api {
        gw: &gw,
        token: ADMIN,
    };
    create_and_refuse(&a).await;
    let key_id = implicit_owner_and_pages(&a).await;
    top_ups_and_sets(&a, &key_id).await;
    audited_then_deleted(&a, &key_id).await;
    gw.stop().await;
}

/// Creation with every field; a duplicate and invalid fields are refused.
async fn create_and_refuse(a: &Api<'_>) {
    let body = json!({"id": "acme", "name": "Acme", "metadata": {"plan": "gold"},
        "rate_limits": {"minute": 100}, "route_limits": {"orders": {"second": 2}},
        "credits": {"remaining": 50, "refill": {"amount": 100, "interval": "month", "day_of_month": 1}}});
    let (s, o) = a.post("/v1/owners", body.clone()).await;
    assert_eq!(s, StatusCode::CREATED, "{o}");
    assert_eq!(
        (o["id"].as_str(), o["enabled"].as_bool()),
        (Some("acme"), Some(true))
    );
    assert_eq!(
        o["credits"],
        json!({"remaining": 50, "refill": {"amount": 100, "interval": "month", "day_of_month": 1}})
    );
    assert_eq!(a.post("/v1/owners", body).await.0, StatusCode::CONFLICT);
    let (s, v) = a
        .post(
            "/v1/owners",
            json!({"id": "b", "route_limits": {"nope": {"minute": 1}},
        "credits": {"refill": {"amount": 1, "interval": "month", "day_of_month": 30}}}),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    let fields: Vec<&str> = v["error"]["fields"]
        .as_array()
        .expect("fields")
        .iter()
        .filter_map(|f| f["field"].as_str())
        .collect();
    assert_eq!(fields, ["route_limits.nope", "credits.refill.day_of_month"]);
}

/// The first key of an unknown owner creates it; an owner with keys stays.
async fn implicit_owner_and_pages(a: &Api<'_>) -> String {
    let (s, k) = a
        .post(
            "/v1/keys",
            json!({"owner_id": "beta", "credits": {"remaining": 9}}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{k}");
    assert_eq!(k["key"]["credits"]["remaining"], 9);
    let key_id = k["key"]["id"].as_str().expect("id").to_string();
    assert_eq!(a.get("/v1/owners/beta").await.0, StatusCode::OK);
    let (s, page) = a.get("/v1/owners?limit=1").await;
    assert_eq!(
        (s, page["owners"][0]["id"].as_str()),
        (StatusCode::OK, Some("acme"))
    );
    let cursor = page["next_cursor"].as_str().expect("cursor").to_string();
    let (_, next) = a.get(&format!("/v1/owners?limit=1&cursor={cursor}")).await;
    assert_eq!(
        (next["owners"][0]["id"].as_str(), &next["next_cursor"]),
        (Some("beta"), &Value::Null)
    );
    assert_eq!(
        a.send(Method::DELETE, "/v1/owners/beta", None).await.0,
        StatusCode::CONFLICT
    );

    key_id
}

/// `add` and `set` on owners and keys; a patch removes credits.
async fn top_ups_and_sets(a: &Api<'_>, key_id: &str) {
    let (s, o) = a.post("/v1/owners/acme/credits", json!({"add": 25})).await;
    assert_eq!(
        (s, o["credits"]["remaining"].as_i64()),
        (StatusCode::OK, Some(75))
    );
    let (_, o) = a.post("/v1/owners/acme/credits", json!({"set": 10})).await;
    assert_eq!(o["credits"]["remaining"], 10);
    assert_eq!(
        a.post("/v1/owners/acme/credits", json!({"add": 1, "set": 1}))
            .await
            .0,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    let (_, kr) = a
        .post(&format!("/v1/keys/{key_id}/credits"), json!({"set": 5}))
        .await;
    assert_eq!(kr["credits"]["remaining"], 5);
    let (s, o) = a
        .send(
            Method::PATCH,
            "/v1/owners/acme",
            Some(json!({"enabled": false, "credits": null})),
        )
        .await;
    assert_eq!(
        (s, o["enabled"].as_bool(), o.get("credits")),
        (StatusCode::OK, Some(false), None)
    );
}

/// Every change is audited, owners named; then the key and owner go.
async fn audited_then_deleted(a: &Api<'_>, key_id: &str) {
    let (_, audit) = a.get("/v1/audit?limit=1000").await;
    let actions: Vec<&str> = audit["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    for want in [
        "owner.create",
        "key.create",
        "owner.credits",
        "key.credits",
        "owner.update",
    ] {
        assert!(actions.contains(&want), "{want} in {actions:?}");
    }
    let credit_row = audit["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .find(|e| e["action"] == "owner.credits")
        .expect("row");
    assert!(
        credit_row["changes"]
            .as_str()
            .expect("changes")
            .contains("\"owner_id\":\"acme\"")
    );

    assert_eq!(
        a.send(Method::DELETE, &format!("/v1/keys/{key_id}"), None)
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        a.send(Method::DELETE, "/v1/owners/beta", None).await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(a.get("/v1/owners/beta").await.0, StatusCode::NOT_FOUND);
}

async fn usage_reports_include_credits_spent(kind: StoreKind) {
    let up = Upstream::start("a").await;
    let (_cfg, gw) = setup(&up, kind).await;
    let a = Api {
        gw: &gw,
        token: ADMIN,
    };
    a.post(
        "/v1/owners",
        json!({"id": "acme", "credits": {"remaining": 100}}),
    )
    .await;
    let (_, k) = a.post("/v1/keys", json!({"owner_id": "acme"})).await;
    let secret = k["secret"].as_str().expect("secret").to_string();
    let id = k["key"]["id"].as_str().expect("id").to_string();
    let ok = eventually(Duration::from_secs(3), || async {
        call(&gw, "/orders/1", &secret).await.0 == 200
    })
    .await;
    assert!(ok.is_some());
    for _ in 0..2 {
        assert_eq!(call(&gw, "/orders/1", &secret).await.0, 200);
    }
    let spent = |path: String| {
        let a = &a;
        async move { a.get(&path).await.1["credits_spent"].as_i64() == Some(6) }
    };
    let reported = eventually(Duration::from_secs(5), || {
        spent(format!("/v1/keys/{id}/usage"))
    })
    .await;
    assert!(
        reported.is_some(),
        "3 requests of cost 2 in the key's report"
    );
    assert!(
        spent("/v1/owners/acme/usage".into()).await,
        "and in the owner's"
    );
    let (_, o) = a.get("/v1/owners/acme").await;
    assert_eq!(o["credits"]["remaining"], 94, "the ledger's balance");
    gw.stop().await;
}

async fn read_tokens_cannot_change_anything(kind: StoreKind) {
    let up = Upstream::start("a").await;
    let (_cfg, gw) = setup(&up, kind).await;
    let writer = Api {
        gw: &gw,
        token: "writer-token",
    };
    let (s, k) = writer.post("/v1/keys", json!({"owner_id": "acme"})).await;
    assert_eq!(s, StatusCode::CREATED, "{k}");
    let id = k["key"]["id"].as_str().expect("id").to_string();
    let secret = k["secret"].as_str().expect("secret").to_string();
    let reader = Api {
        gw: &gw,
        token: "reader-token",
    };
    reader_may_read_and_verify(&reader, &id, &secret).await;
    reader_may_not_change(&reader, &id).await;
    let (_, audit) = writer.get("/v1/audit?limit=1000").await;
    let entries = audit["entries"].as_array().expect("entries");
    assert!(
        entries.iter().all(|e| e["actor"] == "admin:ci"),
        "{entries:?}"
    );
    assert_eq!(
        entries.len(),
        2,
        "the implicit owner and the key; nothing from the reader"
    );
    let admin = Api {
        gw: &gw,
        token: ADMIN,
    };
    assert_eq!(
        admin.post("/v1/owners", json!({"id": "z"})).await.0,
        StatusCode::CREATED
    );
    gw.stop().await;
}

/// A read token reads every listing and record, and verifies.
async fn reader_may_read_and_verify(reader: &Api<'_>, id: &str, secret: &str) {
    for path in [
        "/v1/keys",
        "/v1/owners",
        "/v1/owners/acme",
        "/v1/audit",
        &format!("/v1/keys/{id}"),
    ] {
        assert_eq!(reader.get(path).await.0, StatusCode::OK, "{path}");
    }
    let valid = eventually(Duration::from_secs(3), || async {
        let (s, v) = reader.post("/v1/verify", json!({"key": secret})).await;
        s == StatusCode::OK && v["valid"] == true
    })
    .await;
    assert!(valid.is_some(), "a read token may verify");
}

/// A read token gets 403 `forbidden` on every change.
async fn reader_may_not_change(reader: &Api<'_>, id: &str) {
    let changes: Vec<(Method, String, Value)> = vec![
        (Method::POST, "/v1/keys".into(), json!({"owner_id": "x"})),
        (
            Method::PATCH,
            format!("/v1/keys/{id}"),
            json!({"name": "n"}),
        ),
        (Method::POST, format!("/v1/keys/{id}/revoke"), json!({})),
        (Method::POST, format!("/v1/keys/{id}/rotate"), json!({})),
        (
            Method::POST,
            format!("/v1/keys/{id}/credits"),
            json!({"add": 1}),
        ),
        (Method::DELETE, format!("/v1/keys/{id}"), Value::Null),
        (Method::POST, "/v1/owners".into(), json!({"id": "y"})),
        (
            Method::PATCH,
            "/v1/owners/acme".into(),
            json!({"enabled": false}),
        ),
        (
            Method::POST,
            "/v1/owners/acme/credits".into(),
            json!({"add": 1}),
        ),
        (Method::DELETE, "/v1/owners/acme".into(), Value::Null),
    ];
    for (m, path, body) in changes {
        let body = (!body.is_null()).then_some(body);
        let (s, v) = reader.send(m.clone(), &path, body).await;
        assert_eq!(
            (s, v["error"]["code"].as_str()),
            (StatusCode::FORBIDDEN, Some("forbidden")),
            "{m} {path}"
        );
    }
}

both_stores!(
    owner_and_credit_endpoints_end_to_end,
    usage_reports_include_credits_spent,
    read_tokens_cannot_change_anything,
);
