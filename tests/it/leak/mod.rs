//! Leak response and allowed hours (CONTRACT §11), with real components:
//! the test's own ECDSA P-256 keys served from its own HTTP server as
//! `public_keys_url` (counting fetches), reports signed as GitHub signs them
//! and posted to the gateways' proxy listener.
//! `scanning`: revocation across two gateways, forged and unsigned reports,
//! floods of unknown identifiers, oversized and malformed bodies;
//! `flagging`: flag mode, and no token in a trace-level log;
//! `hours`: allowed hours at Berlin's DST switches with an injected clock.

mod flagging;
mod hours;
mod scanning;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine;
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use p256::pkcs8::EncodePublicKey;
use serde_json::{Value, json};

use crate::harness::{TestConfig, TestGateway, Upstream};

pub const PATH: &str = "/.well-known/keygate/secret-scanning";

/// A fresh P-256 signing key.
pub fn signing_key() -> SigningKey {
    loop {
        let bytes: [u8; 32] = rand::random();
        if let Ok(k) = SigningKey::from_slice(&bytes) {
            return k;
        }
    }
}

/// GitHub's `Github-Public-Key-Signature`: base64 of the DER signature.
pub fn sign(k: &SigningKey, body: &[u8]) -> String {
    let sig: Signature = k.sign(body);
    base64::engine::general_purpose::STANDARD.encode(sig.to_der().as_bytes())
}

/// Serves `{"public_keys": [...]}` at `/keys`, counting requests.
pub struct KeyServer {
    pub url: String,
    fetches: Arc<AtomicUsize>,
    keys: Arc<Mutex<Vec<Value>>>,
    task: tokio::task::JoinHandle<()>,
}

impl KeyServer {
    pub async fn start(keys: &[(&str, &SigningKey)]) -> KeyServer {
        let fetches = Arc::new(AtomicUsize::new(0));
        let list = Arc::new(Mutex::new(Vec::new()));
        let (f, l) = (fetches.clone(), list.clone());
        let app = axum::Router::new().route(
            "/keys",
            axum::routing::get(move || {
                let (f, l) = (f.clone(), l.clone());
                async move {
                    f.fetch_add(1, Ordering::SeqCst);
                    let keys = l.lock().expect("lock").clone();
                    axum::Json(json!({ "public_keys": keys }))
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let server = KeyServer {
            url: format!("http://{addr}/keys"),
            fetches,
            keys: list,
            task,
        };
        for (id, k) in keys {
            server.add(id, k);
        }
        server
    }

    /// Publishes another key (GitHub rotating its keys).
    pub fn add(&self, id: &str, k: &SigningKey) {
        let pem = k
            .verifying_key()
            .to_public_key_pem(p256::pkcs8::LineEnding::LF)
            .expect("pem");
        let entry = json!({"key_identifier": id, "key": pem, "is_current": true});
        self.keys.lock().expect("lock").push(entry);
    }

    pub fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}

impl Drop for KeyServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A report of `tokens` as GitHub sends it.
pub fn report(tokens: &[&str], url: &str) -> Vec<u8> {
    let list: Vec<Value> = tokens
        .iter()
        .map(|t| json!({"token": t, "type": "keygate_api_key", "url": url, "source": "content"}))
        .collect();
    serde_json::to_vec(&list).expect("json")
}

/// Posts `body` to the endpoint with the given signature headers; the
/// status and JSON body.
pub async fn post(
    gw: &TestGateway,
    body: &[u8],
    key_id: Option<&str>,
    signature: Option<&str>,
) -> (u16, Value) {
    let mut r = gw
        .client
        .post(gw.url(PATH))
        .header("content-type", "application/json")
        .body(body.to_vec());
    if let Some(id) = key_id {
        r = r.header("Github-Public-Key-Identifier", id);
    }
    if let Some(s) = signature {
        r = r.header("Github-Public-Key-Signature", s);
    }
    let resp = r.send().await.expect("post report");
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// Posts `body` signed with `k` under `key_id`.
pub async fn post_signed(
    gw: &TestGateway,
    body: &[u8],
    key_id: &str,
    k: &SigningKey,
) -> (u16, Value) {
    post(gw, body, Some(key_id), Some(&sign(k, body))).await
}

/// GitHub's `token_hash`: SHA-256, hex.
pub fn token_hash(token: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A Postgres config with secret scanning on (`public_keys_url` = `keys`)
/// and a catch-all route `r` to `up` that needs a key.
/// A key of owner `acme` in the test's store.
pub async fn acme_key(s: &keygate::service::Services) -> keygate::service::CreatedKey {
    s.keys
        .create(crate::harness::key_spec("acme"), &"t".into())
        .await
        .expect("key")
}

pub async fn scanning_config(up: &Upstream, keys: &KeyServer) -> TestConfig {
    scanning(TestConfig::pg().await, up, keys)
}

pub fn scanning(cfg: TestConfig, up: &Upstream, keys: &KeyServer) -> TestConfig {
    let url = keys.url.clone();
    cfg.upstream("a", &[up.addr], |_| {})
        .route("r", "/", "a", |_| {})
        .with(move |f| {
            let s = &mut f.secret_scanning;
            s.enabled = Some(true);
            s.public_keys_url = Some(url);
            s.max_body = Some("64KiB".into());
            s.keys_refetch_min_interval = Some("1h".into());
        })
}

/// The audit records with `action`, for `key` (any key: `None`).
pub async fn audit_rows(
    s: &keygate::service::Services,
    action: &str,
    key: Option<uuid::Uuid>,
) -> Vec<keygate::audit::AuditEntry> {
    let (rows, _) = s.audit.page(0, Some(1000)).await.expect("audit");
    rows.into_iter()
        .filter(|r| r.action == action && (key.is_none() || r.key_id == key))
        .collect()
}
