//! A real HTTP upstream that records what it receives.
//!
//! Routes: `/slow/{ms}` sleeps before answering; `/status/{code}` answers that
//! status; `/cost/{n}` answers 200 with `x-cost: n` (a post-paid route's
//! reported cost); anything else answers 200 with `upstream <name>`. Request bodies are
//! read as a stream; the first body byte's arrival time is recorded.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;

#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    /// Lowercase header names; repeated headers joined by ", ".
    pub headers: BTreeMap<String, String>,
    pub body_len: usize,
    pub first_body_byte: Option<Instant>,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }

    pub fn keygate_headers(&self) -> BTreeMap<String, String> {
        self.headers
            .iter()
            .filter(|(k, _)| k.starts_with("x-keygate-"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

struct Shared {
    name: String,
    seen: Mutex<Vec<Seen>>,
}

pub struct Upstream {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Upstream {
    pub async fn start(name: &str) -> Upstream {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind upstream");
        let addr = listener.local_addr().expect("addr");
        let shared = Arc::new(Shared {
            name: name.to_string(),
            seen: Mutex::new(Vec::new()),
        });
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Upstream { addr, shared, task }
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.shared.seen.lock().expect("lock").clone()
    }

    pub fn last(&self) -> Seen {
        self.seen().pop().expect("upstream received a request")
    }

    pub fn count(&self) -> usize {
        self.shared.seen.lock().expect("lock").len()
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn handle(State(s): State<Arc<Shared>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let mut headers: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in &parts.headers {
        let v = String::from_utf8_lossy(v.as_bytes()).into_owned();
        headers
            .entry(k.as_str().to_string())
            .and_modify(|e| {
                e.push_str(", ");
                e.push_str(&v);
            })
            .or_insert(v);
    }
    let mut stream = body.into_data_stream();
    let mut body_len = 0;
    let mut first_body_byte = None;
    while let Some(chunk) = stream.next().await {
        let Ok(chunk) = chunk else { break };
        if first_body_byte.is_none() && !chunk.is_empty() {
            first_body_byte = Some(Instant::now());
        }
        body_len += chunk.len();
    }
    let path = parts.uri.path().to_string();
    s.seen.lock().expect("lock").push(Seen {
        method: parts.method.to_string(),
        path: path.clone(),
        headers,
        body_len,
        first_body_byte,
    });
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match segs.as_slice() {
        ["slow", ms, ..] => {
            let ms: u64 = ms.parse().unwrap_or(1000);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            (StatusCode::OK, format!("upstream {} slow", s.name)).into_response()
        }
        ["cost", n, ..] => Response::builder()
            .status(StatusCode::OK)
            .header("x-cost", *n)
            .body(Body::from("costed"))
            .unwrap_or_default(),
        ["status", code, ..] => {
            let code = code
                .parse()
                .ok()
                .and_then(|c| StatusCode::from_u16(c).ok())
                .unwrap_or(StatusCode::OK);
            (code, format!("upstream {} status", s.name)).into_response()
        }
        _ => Response::builder()
            .status(StatusCode::OK)
            .header("x-body-len", body_len.to_string())
            .body(Body::from(format!("upstream {}", s.name)))
            .unwrap_or_default(),
    }
}

/// An address that refuses connections (bound, then closed).
pub fn dead_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr")
}
