//! The admin API: auth, every key endpoint, pagination under inserts, partial
//! updates and errors (`keys`). `decisions`: rotation that tells the client, verify
//! parity with the proxy, cross-gateway enforcement. `audit`: usage and audit
//! endpoints, the tamper-evident chain, schemathesis.

mod audit;
mod decisions;
mod keys;

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
    pagination_stays_stable_while_keys_are_added,
);
