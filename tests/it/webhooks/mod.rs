//! Webhooks (CONTRACT §11): a real HTTP receiver that records deliveries,
//! checks their Standard Webhooks signatures with its own implementation of
//! the specification (not keygate's), and fails on cue (500s, answers slower
//! than the timeout, a closed port).
//! `delivery`: each key change once per matching endpoint after failures,
//! filters, dead letter and retry, Postgres and SQLite; `instances`: two
//! gateways on one Postgres, a SIGKILL mid-delivery; `signals`:
//! `key.expiring`, `ratelimit.exceeded`, `credits.low`.

mod delivery;
mod instances;
mod retention;
mod signals;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use base64::Engine;
use hmac::{KeyInit, Mac};
use keygate::config::file::{WebhookSection, WebhooksSection};
use parking_lot::Mutex;

use crate::harness::TestConfig;

/// The endpoints' secrets, as `whsec_<base64>`.
pub const SECRET_A: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
pub const SECRET_B: &str = "whsec_c2Vjb25kLXJlY2VpdmVyLXNlY3JldC0xMjM0";

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub id: String,
    pub body: serde_json::Value,
    /// Whether its signature checked out under the endpoint's secret.
    pub valid: bool,
    /// The body as received, and the three Standard Webhooks headers.
    pub raw: String,
    pub headers: [(String, String); 3],
}

/// What the receiver does with the next requests.
#[derive(Default)]
struct Cues {
    /// Answer 500 to this many requests.
    fail: AtomicUsize,
    /// Hold this many requests for `hold` before answering 200.
    slow: AtomicUsize,
    hold: Mutex<Duration>,
}

/// A webhook receiver on a local port.
#[derive(Clone)]
pub struct Receiver {
    pub addr: SocketAddr,
    got: Arc<Mutex<Vec<Received>>>,
    cues: Arc<Cues>,
    secret: &'static str,
}

impl Receiver {
    pub async fn start(secret: &'static str) -> Receiver {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        Self::serve(l, secret)
    }

    /// On a given port (one that was closed until now).
    pub async fn start_on(addr: SocketAddr, secret: &'static str) -> Receiver {
        let l = tokio::net::TcpListener::bind(addr).await.expect("bind");
        Self::serve(l, secret)
    }

    fn serve(l: tokio::net::TcpListener, secret: &'static str) -> Receiver {
        let r = Receiver {
            addr: l.local_addr().expect("addr"),
            got: Arc::default(),
            cues: Arc::default(),
            secret,
        };
        let me = r.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |h: HeaderMap, body: Bytes| {
                let me = me.clone();
                async move { me.handle(&h, &body).await }
            }),
        );
        tokio::spawn(async move {
            let _ = axum::serve(l, app).await;
        });
        r
    }

    async fn handle(&self, h: &HeaderMap, body: &[u8]) -> StatusCode {
        let header = |n: &str| {
            h.get(n)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned()
        };
        let id = header("webhook-id");
        let valid = verify(
            self.secret,
            &id,
            &header("webhook-timestamp"),
            &header("webhook-signature"),
            body,
        );
        let raw = String::from_utf8_lossy(body).into_owned();
        let headers = ["webhook-id", "webhook-timestamp", "webhook-signature"]
            .map(|n| (n.to_owned(), header(n)));
        let body = serde_json::from_slice(body).unwrap_or(serde_json::Value::Null);
        self.got.lock().push(Received {
            id,
            body,
            valid,
            raw,
            headers,
        });
        if take(&self.cues.fail) {
            return StatusCode::INTERNAL_SERVER_ERROR;
        }
        if take(&self.cues.slow) {
            let hold = *self.cues.hold.lock();
            tokio::time::sleep(hold).await;
        }
        StatusCode::NO_CONTENT
    }

    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    /// Answer 500 to the next `n` requests.
    pub fn fail_next(&self, n: usize) {
        self.cues.fail.store(n, Ordering::SeqCst);
    }

    /// Hold the next `n` requests for `hold` each.
    pub fn slow_next(&self, n: usize, hold: Duration) {
        *self.cues.hold.lock() = hold;
        self.cues.slow.store(n, Ordering::SeqCst);
    }

    pub fn received(&self) -> Vec<Received> {
        self.got.lock().clone()
    }

    /// The events, deduplicated by `webhook-id` as a receiver should: id → body.
    pub fn events(&self) -> HashMap<String, serde_json::Value> {
        self.received()
            .into_iter()
            .map(|r| (r.id, r.body))
            .collect()
    }

    /// Event types of the deduplicated events, sorted.
    pub fn types(&self) -> Vec<String> {
        let mut t: Vec<String> = self
            .events()
            .values()
            .map(|b| b["type"].as_str().unwrap_or("?").to_owned())
            .collect();
        t.sort();
        t
    }
}

fn take(n: &AtomicUsize) -> bool {
    n.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| v.checked_sub(1))
        .is_ok()
}

/// The Standard Webhooks check, written from the specification: the secret
/// is the base64 after `whsec_`; the signed content `<id>.<timestamp>.<body>`;
/// the header a space-separated list of `v1,<base64 HMAC-SHA256>`; the
/// timestamp within five minutes of now.
pub fn verify(secret: &str, id: &str, ts: &str, header: &str, body: &[u8]) -> bool {
    let b64 = base64::engine::general_purpose::STANDARD;
    let Some(key) = secret
        .strip_prefix("whsec_")
        .and_then(|s| b64.decode(s).ok())
    else {
        return false;
    };
    let Ok(t) = ts.parse::<i64>() else {
        return false;
    };
    if (chrono::Utc::now().timestamp() - t).abs() > 300 || id.is_empty() {
        return false;
    }
    let mut content = format!("{id}.{ts}.").into_bytes();
    content.extend_from_slice(body);
    header.split(' ').any(|sig| {
        let Some(given) = sig.strip_prefix("v1,").and_then(|s| b64.decode(s).ok()) else {
            return false;
        };
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).expect("hmac key");
        mac.update(&content);
        mac.verify_slice(&given).is_ok()
    })
}

/// Checks each request with the `standardwebhooks` Python package (the
/// specification's reference library): whether each verified. Fails the
/// test when Python or the package is missing (scripts/test installs it).
pub fn python_verify(secret: &str, got: &[Received]) -> Vec<bool> {
    use std::io::Write;
    const SCRIPT: &str = r#"
import json, sys
try:
    from standardwebhooks.webhooks import Webhook
except ImportError as e:
    sys.exit("the standardwebhooks package is missing (python3 -m pip install standardwebhooks): %s" % e)
req = json.load(sys.stdin)
wh = Webhook(req["secret"])
out = []
for d in req["deliveries"]:
    try:
        wh.verify(d["body"], d["headers"])
        out.append(True)
    except Exception:
        out.append(False)
print(json.dumps(out))
"#;
    let deliveries: Vec<serde_json::Value> = got
        .iter()
        .map(|r| {
            let headers: serde_json::Map<String, serde_json::Value> = r
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), serde_json::Value::from(v.as_str())))
                .collect();
            serde_json::json!({"body": r.raw, "headers": headers})
        })
        .collect();
    let input = serde_json::json!({"secret": secret, "deliveries": deliveries});
    let mut child = std::process::Command::new("python3")
        .arg("-c")
        .arg(SCRIPT)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 is needed for the standardwebhooks check");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.to_string().as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("python3");
    assert!(
        out.status.success(),
        "standardwebhooks check failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("python's answer")
}

/// An endpoint `name` → `url` for `events`, its secret in `env`.
pub fn endpoint(name: &str, url: &str, events: &[&str], env: &str) -> WebhookSection {
    WebhookSection {
        name: Some(name.into()),
        url: Some(url.into()),
        events: events.iter().map(|e| e.to_string()).collect(),
        secret_env: Some(env.into()),
        ca_file: None,
    }
}

/// Quick retries: 100 ms doubling to 400 ms, 2 s timeout, 50 ms polls.
pub fn fast(max_age: &str) -> WebhooksSection {
    WebhooksSection {
        max_age: Some(max_age.into()),
        initial_backoff: Some("100ms".into()),
        max_backoff: Some("400ms".into()),
        timeout: Some("2s".into()),
        poll_interval: Some("50ms".into()),
        batch_size: Some(20),
        ..Default::default()
    }
}

/// `cfg` with `hooks`, both secrets in its environment, an admin token.
pub fn with_hooks(
    cfg: TestConfig,
    tuning: WebhooksSection,
    hooks: Vec<WebhookSection>,
) -> TestConfig {
    cfg.env("HOOK_SECRET_A", SECRET_A)
        .env("HOOK_SECRET_B", SECRET_B)
        .env("KEYGATE_ADMIN_TOKEN", TOKEN)
        .with(|f| {
            f.webhooks = tuning;
            f.webhook = hooks;
        })
}

pub const TOKEN: &str = "webhook-test-admin-token";

/// `GET /v1/webhooks/deliveries?<query>` on the admin API.
pub async fn deliveries(admin: SocketAddr, query: &str) -> Vec<serde_json::Value> {
    let url = format!("http://{admin}/v1/webhooks/deliveries?{query}");
    let v: serde_json::Value = reqwest::Client::new()
        .get(url)
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("deliveries")
        .json()
        .await
        .expect("json");
    v["deliveries"].as_array().cloned().unwrap_or_default()
}

/// Waits up to `secs` for `f`.
pub async fn until<F, Fut>(secs: u64, f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    crate::harness::eventually(Duration::from_secs(secs), f)
        .await
        .is_some()
}
