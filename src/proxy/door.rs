//! The front door: every HTTP/1 request head is read here, within
//! `gateway.request_head_timeout` and `max_header_size` / `max_headers`,
//! before Pingora parses it. A head that does not parse, is too large or too
//! slow is answered here with keygate's JSON error and a request id (Pingora
//! would send an empty `400` and close); a connection idle longer than
//! `keepalive_timeout` is closed. A good head is handed back to the stream
//! (`rewind`) and Pingora reads it as if from the socket. HTTP/2 connections
//! (ALPN `h2`) go to Pingora directly: the h2 codec bounds its own frames.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use pingora_core::apps::{HttpPersistentSettings, HttpServerApp, ReusedHttpStream, ServerApp};
use pingora_core::protocols::http::ServerSession;
use pingora_core::protocols::{ALPN, Stream};
use pingora_core::server::ShutdownWatch;
use pingora_proxy::HttpProxy;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::rewind::Rewound;
use super::service::Proxy;
use crate::config::DoorLimits;
use crate::metrics::Metrics;
use crate::outcome::{Outcome, Rejection};

/// Pingora's ceiling on header lines; `DoorLimits::max_headers` is at most this.
const MAX_HEADERS: usize = 256;

/// How long a connection idle between requests is kept once the gateway is
/// shutting down: a request already on its way is still served (and told to
/// close); closing at once would fail it.
pub const DRAIN_IDLE: Duration = Duration::from_secs(1);

pub struct Door {
    http: Arc<HttpProxy<Proxy>>,
    limits: DoorLimits,
    metrics: Arc<Metrics>,
    open: Arc<AtomicUsize>,
}

/// Counts a connection open for as long as it lives.
struct Open(Arc<AtomicUsize>);

impl Open {
    fn new(open: &Arc<AtomicUsize>) -> Open {
        open.fetch_add(1, Ordering::Relaxed);
        Open(open.clone())
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What reading one request head came to.
#[derive(Debug, PartialEq, Eq)]
pub enum Head {
    /// A complete, parseable head (and whatever followed it in the same reads).
    Complete(Vec<u8>),
    /// The peer closed, or stayed idle past the keep-alive timeout, between requests.
    Closed,
    /// Refused with this outcome.
    Refused(Outcome),
}

/// Whether `buf` holds a complete head: `Ok(true)`, not yet: `Ok(false)`,
/// or why it never will.
pub fn check(buf: &[u8], limits: &DoorLimits) -> Result<bool, Outcome> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers[..limits.max_headers.min(MAX_HEADERS)]);
    match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) if len > limits.max_header_bytes => {
            Err(Outcome::HeadersTooLarge)
        }
        Ok(httparse::Status::Complete(_)) => Ok(true),
        Ok(httparse::Status::Partial) if buf.len() > limits.max_header_bytes => {
            Err(Outcome::HeadersTooLarge)
        }
        Ok(httparse::Status::Partial) => Ok(false),
        Err(httparse::Error::TooManyHeaders) => Err(Outcome::HeadersTooLarge),
        Err(_) => Err(Outcome::MalformedRequest),
    }
}

/// Waits up to `idle` for the first bytes of a head; once shutting down, at
/// most [`DRAIN_IDLE`] more. Whether any arrived.
async fn first_bytes<S: tokio::io::AsyncRead + Unpin>(
    s: &mut S,
    buf: &mut Vec<u8>,
    idle: Duration,
    shutdown: &ShutdownWatch,
) -> bool {
    let deadline = tokio::time::Instant::now() + idle;
    let mut shutdown = shutdown.clone();
    let read = s.read_buf(buf);
    tokio::pin!(read);
    let n = tokio::select! {
        n = tokio::time::timeout_at(deadline, &mut read) => n,
        () = async { drop(shutdown.wait_for(|s| *s).await) } => {
            let drain = deadline.min(tokio::time::Instant::now() + DRAIN_IDLE);
            tokio::time::timeout_at(drain, &mut read).await
        }
    };
    matches!(n, Ok(Ok(n)) if n > 0)
}

/// Reads one head: the first byte within `idle` (shortened when shutting
/// down), the rest within the head timeout.
pub async fn read<S: tokio::io::AsyncRead + Unpin>(
    s: &mut S,
    limits: &DoorLimits,
    idle: Duration,
    shutdown: &ShutdownWatch,
) -> Head {
    let mut buf = Vec::with_capacity(4096);
    if !first_bytes(s, &mut buf, idle, shutdown).await {
        return Head::Closed;
    }
    let rest = async {
        loop {
            match check(&buf, limits) {
                Ok(true) => return Head::Complete(std::mem::take(&mut buf)),
                Ok(false) => {}
                Err(outcome) => return Head::Refused(outcome),
            }
            buf.reserve(4096);
            match s.read_buf(&mut buf).await {
                Ok(n) if n > 0 => {}
                // Closed mid-head: nobody to answer.
                _ => return Head::Closed,
            }
        }
    };
    tokio::time::timeout(limits.head_timeout, rest)
        .await
        .unwrap_or(Head::Refused(Outcome::RequestTimeout))
}

/// The JSON error response for a refused head, connection closed after it.
fn refusal(outcome: Outcome) -> Vec<u8> {
    let id = crate::ids::uuid_header(crate::ids::uuid_v7());
    let body = Rejection::new(outcome).body(id.to_str().unwrap_or(""));
    let status = outcome.status();
    let reason = http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("");
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
         cache-control: no-store\r\nx-request-id: {}\r\nconnection: close\r\n\r\n",
        body.len(),
        id.to_str().unwrap_or("")
    )
    .into_bytes();
    out.extend_from_slice(&body);
    out
}

impl Door {
    /// `open` counts the connections being served (a graceful stop waits for them).
    pub fn new(
        http: Arc<HttpProxy<Proxy>>,
        limits: DoorLimits,
        metrics: Arc<Metrics>,
        open: Arc<AtomicUsize>,
    ) -> Door {
        Door {
            http,
            limits,
            metrics,
            open,
        }
    }

    async fn refuse(&self, stream: &mut Stream, outcome: Outcome) {
        self.metrics.request(None, outcome, 0.0);
        let _ = stream.write_all(&refusal(outcome)).await;
        let _ = stream.flush().await;
        let _ = stream.shutdown().await;
    }
}

#[async_trait]
impl ServerApp for Door {
    /// A new connection (or one Pingora handed back for reuse): HTTP/2 goes
    /// to Pingora; HTTP/1 requests pass the door one head at a time.
    async fn process_new(
        self: &Arc<Self>,
        mut stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let _open = Open::new(&self.open);
        if matches!(stream.selected_alpn_proto(), Some(ALPN::H2)) {
            return ServerApp::process_new(&self.http, stream, shutdown).await;
        }
        let mut idle = self.limits.head_timeout;
        let mut persistent = None;
        loop {
            match read(&mut stream, &self.limits, idle, shutdown).await {
                Head::Complete(head) => stream = Rewound::wrap(stream, head),
                Head::Closed => return None,
                Head::Refused(outcome) => {
                    self.refuse(&mut stream, outcome).await;
                    return None;
                }
            }
            let mut session = ServerSession::new_http1(stream);
            match persistent.take() {
                Some(p) => HttpPersistentSettings::apply_to_session(p, &mut session),
                // Idle time between requests is the door's to bound (`Some(0)`:
                // keep-alive without Pingora's own timeout).
                None => session.set_keepalive(Some(0)),
            }
            if *shutdown.borrow() {
                session.set_keepalive(None);
            }
            let reused = self.http.process_new_http(session, shutdown).await;
            let (next, settings) = reused.map(ReusedHttpStream::consume)?;
            stream = next;
            persistent = settings;
            idle = self.limits.keepalive_timeout;
        }
    }

    async fn cleanup(&self) {
        ServerApp::cleanup(&*self.http).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> DoorLimits {
        DoorLimits {
            head_timeout: Duration::from_millis(200),
            keepalive_timeout: Duration::from_millis(200),
            max_header_bytes: 256,
            max_headers: 4,
        }
    }

    #[test]
    fn heads_are_complete_partial_or_refused() {
        let l = limits();
        assert_eq!(check(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", &l), Ok(true));
        assert_eq!(check(b"GET / HTTP/1.1\r\nHost: a\r\n", &l), Ok(false));
        assert_eq!(
            check(b"GET / HTTP/1.1\r\nHo st: a\r\n\r\n", &l),
            Err(Outcome::MalformedRequest)
        );
        assert_eq!(
            check(b"\x00\x01\x02 garbage\r\n\r\n", &l),
            Err(Outcome::MalformedRequest)
        );
        let many = "GET / HTTP/1.1\r\na: 1\r\nb: 2\r\nc: 3\r\nd: 4\r\ne: 5\r\n\r\n";
        assert_eq!(check(many.as_bytes(), &l), Err(Outcome::HeadersTooLarge));
        let big = format!("GET / HTTP/1.1\r\nx: {}\r\n", "y".repeat(300));
        assert_eq!(check(big.as_bytes(), &l), Err(Outcome::HeadersTooLarge));
    }

    #[tokio::test]
    async fn slow_and_idle_connections_are_bounded() {
        let l = limits();
        let (_keep, running) = tokio::sync::watch::channel(false);
        let (mut client, mut server) = tokio::io::duplex(1024);
        client
            .write_all(b"GET / HTTP/1.1\r\n")
            .await
            .expect("write");
        assert_eq!(
            read(&mut server, &l, l.keepalive_timeout, &running).await,
            Head::Refused(Outcome::RequestTimeout)
        );
        let (_client, mut server) = tokio::io::duplex(1024);
        assert_eq!(
            read(&mut server, &l, l.keepalive_timeout, &running).await,
            Head::Closed
        );
        let (mut client, mut server) = tokio::io::duplex(1024);
        client
            .write_all(b"GET / HTTP/1.1\r\n\r\nGET /next")
            .await
            .expect("write");
        match read(&mut server, &l, l.keepalive_timeout, &running).await {
            Head::Complete(bytes) => assert!(bytes.ends_with(b"GET /next"), "pipelined bytes kept"),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn shutting_down_still_serves_a_request_on_its_way_then_closes_idle() {
        let l = DoorLimits {
            keepalive_timeout: Duration::from_secs(30),
            ..limits()
        };
        let (stop, watch) = tokio::sync::watch::channel(false);
        let (mut client, mut server) = tokio::io::duplex(1024);
        let reader = tokio::spawn(async move {
            let head = read(&mut server, &l, l.keepalive_timeout, &watch).await;
            let start = tokio::time::Instant::now();
            let idle = read(&mut server, &l, l.keepalive_timeout, &watch).await;
            (head, idle, start.elapsed())
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        stop.send(true).expect("send");
        tokio::time::sleep(Duration::from_millis(50)).await;
        client
            .write_all(b"GET / HTTP/1.1\r\n\r\n")
            .await
            .expect("write");
        let (head, idle, took) = reader.await.expect("join");
        assert!(matches!(head, Head::Complete(_)), "{head:?}");
        assert_eq!(idle, Head::Closed);
        assert!(took >= DRAIN_IDLE && took < DRAIN_IDLE * 3, "{took:?}");
    }

    #[test]
    fn refusals_are_json_with_a_request_id() {
        let r = String::from_utf8(refusal(Outcome::HeadersTooLarge)).expect("utf8");
        assert!(
            r.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"),
            "{r}"
        );
        assert!(
            r.contains("x-request-id: ") && r.contains("\"code\":\"headers_too_large\""),
            "{r}"
        );
    }
}
