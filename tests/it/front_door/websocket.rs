//! WebSockets through keygate, plain and over TLS (HTTP/1.1): authenticated
//! and rate-limited at the handshake (counted once, not per message), then
//! passed both ways; one usage record for the connection, with its bytes.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use keygate::keys::model::KeySpec;
use keygate::ratelimit::window::Limits;
use keygate::service::CreatedKey;
use keygate::store::UsageQuery;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use super::{Certs, client_config, tls_addr, with_tls};
use crate::harness::{StoreKind, TestConfig, TestGateway, eventually, key_spec};

/// A WebSocket echo server that records each handshake's headers.
struct Echo {
    addr: SocketAddr,
    handshakes: Arc<Mutex<Vec<http::HeaderMap>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Echo {
    async fn start() -> Echo {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let handshakes = Arc::new(Mutex::new(Vec::new()));
        let seen = handshakes.clone();
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let seen = seen.clone();
                tokio::spawn(async move {
                    #[allow(clippy::result_large_err)] // tungstenite's callback type
                    let record = |req: &Request, resp: Response| {
                        seen.lock().expect("lock").push(req.headers().clone());
                        Ok(resp)
                    };
                    let Ok(ws) = tokio_tungstenite::accept_hdr_async(tcp, record).await else {
                        return;
                    };
                    let (mut tx, mut rx) = ws.split();
                    while let Some(Ok(m)) = rx.next().await {
                        if (m.is_text() || m.is_binary()) && tx.send(m).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        Echo {
            addr,
            handshakes,
            task,
        }
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.task.abort();
    }
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}
type Ws = WebSocketStream<Box<dyn Io>>;

/// Opens `/ws` through keygate: plain, or TLS when `certs` is given.
async fn open(
    gw: &TestGateway,
    certs: Option<&Certs>,
    key: Option<&str>,
    request_id: &str,
) -> Result<Ws, WsError> {
    let (addr, scheme) = match certs {
        Some(_) => (tls_addr(gw), "wss"),
        None => (gw.proxy, "ws"),
    };
    let mut req = format!("{scheme}://localhost:{}/ws", addr.port())
        .into_client_request()
        .expect("request");
    req.headers_mut()
        .insert("x-request-id", request_id.parse().expect("id"));
    if let Some(k) = key {
        req.headers_mut()
            .insert("x-api-key", k.parse().expect("key"));
    }
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let io: Box<dyn Io> = match certs {
        Some(c) => {
            let config = Arc::new(client_config(&c.ca, &[b"http/1.1"]));
            let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
            let tls = tokio_rustls::TlsConnector::from(config)
                .connect(name, tcp)
                .await;
            Box::new(tls.expect("TLS handshake"))
        }
        None => Box::new(tcp),
    };
    let (ws, resp) = tokio_tungstenite::client_async(req, io).await?;
    assert_eq!(resp.status(), 101);
    Ok(ws)
}

/// The HTTP status a refused handshake got, and its error code.
fn refused(r: Result<Ws, WsError>) -> (u16, String) {
    match r {
        Err(WsError::Http(resp)) => {
            let body: serde_json::Value =
                serde_json::from_slice(resp.body().as_deref().unwrap_or_default())
                    .expect("JSON error body");
            (
                resp.status().as_u16(),
                body["error"]["code"].as_str().unwrap_or("").into(),
            )
        }
        Err(e) => panic!("handshake failed without an HTTP answer: {e}"),
        Ok(_) => panic!("upgraded without being allowed to"),
    }
}

/// Sends `n` text messages and a binary one, each echoed back; closes.
/// Returns the payload bytes sent.
async fn echo_and_close(mut ws: Ws, n: usize) -> u64 {
    let mut sent = 0;
    for i in 0..n {
        let text = format!("hello {i}");
        sent += text.len() as u64;
        ws.send(Message::text(text.clone())).await.expect("send");
        let back = tokio::time::timeout(Duration::from_secs(5), ws.next()).await;
        assert_eq!(
            back.expect("echo in time").expect("open").expect("ok"),
            Message::text(text)
        );
    }
    let blob = vec![7u8; 3000];
    sent += blob.len() as u64;
    ws.send(Message::binary(blob.clone())).await.expect("send");
    let back = ws.next().await.expect("open").expect("ok");
    assert_eq!(back.into_data().as_ref(), blob.as_slice());
    ws.close(None).await.expect("close");
    while let Some(Ok(_)) = ws.next().await {}
    sent
}

fn limited() -> KeySpec {
    KeySpec {
        rate_limits: Limits {
            minute: Some(2),
            ..Limits::default()
        },
        ..key_spec("ws")
    }
}

/// One transport: no key → 401; a key allowed 2 handshakes a minute: one
/// connection with many messages, a second handshake, a third is 429.
async fn one_transport(gw: &TestGateway, cfg: &TestConfig, certs: Option<&Certs>, k: &CreatedKey) {
    let tag = if certs.is_some() { "tls" } else { "plain" };
    assert_eq!(
        refused(open(gw, certs, None, &format!("{tag}-none")).await),
        (401, "missing_key".into())
    );
    let key = Some(k.secret.expose());
    let first = format!("{tag}-first");
    let sent = echo_and_close(open(gw, certs, key, &first).await.expect("upgrade"), 10).await;
    let second = open(gw, certs, key, &format!("{tag}-second"))
        .await
        .expect("messages were not counted");
    echo_and_close(second, 1).await;
    assert_eq!(
        refused(open(gw, certs, key, &format!("{tag}-third")).await),
        (429, "rate_limited".into())
    );

    let store = cfg.store().await;
    let query = UsageQuery {
        key_id: Some(k.key.id),
        limit: 100,
        ..UsageQuery::default()
    };
    let rows = || async { store.usage_events(&query).await.expect("usage") };
    let _ = eventually(Duration::from_secs(10), || async {
        rows().await.len() >= 3
    })
    .await;
    let rows = rows().await;
    let conn: Vec<_> = rows.iter().filter(|r| r.request_id == first).collect();
    assert_eq!(conn.len(), 1, "one record for the connection: {rows:?}");
    assert_eq!(conn[0].status, 101);
    assert!(
        conn[0].bytes_in >= sent && conn[0].bytes_out >= sent,
        "{:?} for {sent}",
        conn[0]
    );
    assert_eq!(rows.len(), 3, "two connections and a refusal: {rows:?}");
}

#[tokio::test]
async fn websockets_are_authenticated_at_the_handshake_then_pass_both_ways() {
    let certs = Certs::new();
    let echo = Echo::start().await;
    let cfg = TestConfig::new(StoreKind::Sqlite)
        .await
        .upstream("ws", &[echo.addr], |u| u.read_timeout = Some("1s".into()))
        .route("ws", "/ws", "ws", |_| {});
    let cfg = with_tls(cfg, &certs.pairs());
    let keys = cfg.keys().await;
    let plain = keys.create(limited(), &"t".into()).await.expect("key");
    let tls = keys.create(limited(), &"t".into()).await.expect("key");
    let gw = cfg.start().await;
    one_transport(&gw, &cfg, None, &plain).await;
    one_transport(&gw, &cfg, Some(&certs), &tls).await;
    let seen = echo.handshakes.lock().expect("lock").clone();
    assert_eq!(
        seen.len(),
        4,
        "only admitted handshakes reached the upstream"
    );
    for h in &seen {
        assert!(
            h.contains_key("x-keygate-key-id") && !h.contains_key("x-api-key"),
            "{h:?}"
        );
    }
    gw.stop().await;
}

#[tokio::test]
async fn a_quiet_websocket_outlives_the_upstream_read_timeout() {
    let echo = Echo::start().await;
    let cfg = TestConfig::new(StoreKind::Sqlite)
        .await
        .upstream("ws", &[echo.addr], |u| {
            u.read_timeout = Some("300ms".into())
        })
        .route("ws", "/ws", "ws", TestConfig::public);
    let gw = cfg.start().await;
    let mut ws = open(&gw, None, None, "quiet").await.expect("upgrade");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    ws.send(Message::text("still here")).await.expect("send");
    let back = tokio::time::timeout(Duration::from_secs(5), ws.next()).await;
    assert_eq!(
        back.expect("in time").expect("open").expect("ok"),
        Message::text("still here")
    );
    gw.stop().await;
}
