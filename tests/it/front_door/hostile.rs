//! Hostile input at the door: a key sent twice or also as a bearer token is
//! ambiguous (400); malformed heads get keygate's JSON 400 with a request id;
//! too many or too large headers 431; a slow head is cut at
//! `request_head_timeout` (408); an idle keep-alive connection is closed after
//! `keepalive_timeout`; no log line at any level holds a key.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use http::Version;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{Certs, TlsClient, tls_addr, with_tls};
use crate::harness::binary::{self, Process};
use crate::harness::{StoreKind, TestConfig, Upstream, key_spec};

/// A raw HTTP/1.1 response.
#[derive(Debug)]
struct Raw {
    status: u16,
    headers: BTreeMap<String, String>,
    body: Vec<u8>,
}

impl Raw {
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {self:?}"))
    }
}

/// Reads one response (head, then a `content-length` body) from `s`.
async fn read_response(s: &mut TcpStream) -> Option<Raw> {
    let mut buf = Vec::new();
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let mut chunk = [0u8; 4096];
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers: BTreeMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let len: usize = headers
        .get("content-length")
        .and_then(|l| l.parse().ok())
        .unwrap_or(0);
    let mut body = buf[end..].to_vec();
    while body.len() < len {
        let mut chunk = [0u8; 4096];
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => body.extend_from_slice(&chunk[..n]),
        }
    }
    Some(Raw {
        status,
        headers,
        body,
    })
}

/// Whether the peer closes `s` within `within` (reads return 0).
async fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 256];
    matches!(
        tokio::time::timeout(within, s.read(&mut buf)).await,
        Ok(Ok(0) | Err(_))
    )
}

/// Sends `bytes` on a new connection; the response, which must close the connection.
async fn refused(addr: SocketAddr, bytes: &[u8]) -> Raw {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(bytes).await.expect("write");
    let r = read_response(&mut s).await.expect("a response");
    assert!(
        closed_within(&mut s, Duration::from_secs(2)).await,
        "closed after {r:?}"
    );
    assert_eq!(
        r.headers.get("content-type").map(String::as_str),
        Some("application/json")
    );
    let id = r
        .headers
        .get("x-request-id")
        .cloned()
        .expect("x-request-id");
    assert_eq!(r.json()["error"]["request_id"], id.as_str(), "{r:?}");
    r
}

/// A keyed catch-all route with bearer tokens accepted, 1 s head and keep-alive timeouts.
async fn door_config(up: &Upstream) -> TestConfig {
    TestConfig::new(StoreKind::Sqlite)
        .await
        .upstream("a", &[up.addr], |_| {})
        .route("r", "/", "a", |_| {})
        .with(|f| {
            f.gateway.accept_bearer = Some(true);
            f.gateway.request_head_timeout = Some("1s".into());
            f.gateway.keepalive_timeout = Some("1s".into());
        })
}

#[tokio::test]
async fn a_key_sent_twice_or_also_as_a_bearer_token_is_ambiguous() {
    let certs = Certs::new();
    let up = Upstream::start("a").await;
    let cfg = with_tls(door_config(&up).await, &certs.pairs());
    let k = cfg
        .keys()
        .await
        .create(key_spec("o"), &"t".into())
        .await
        .expect("key");
    let key = k.secret.expose();
    let bearer = format!("Bearer {key}");
    let other = "kg_another_key_entirely";
    let gw = cfg.start().await;
    let h2 = TlsClient::new(&certs.ca, Version::HTTP_2);
    let h2_url = format!("https://localhost:{}/x", tls_addr(&gw).port());
    let ambiguous: [Vec<(&str, &str)>; 4] = [
        vec![("x-api-key", key), ("x-api-key", key)],
        vec![("x-api-key", key), ("x-api-key", other)],
        vec![("x-api-key", key), ("authorization", &bearer)],
        vec![("x-api-key", other), ("authorization", &bearer)],
    ];
    for headers in &ambiguous {
        let mut req = gw.get("/x");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let (status, body) = crate::harness::error_code(req.send().await.expect("send")).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (400, Some("ambiguous_key")),
            "{headers:?}"
        );
        let r = h2.get(&h2_url, headers).await;
        assert_eq!(
            (r.status, r.json()["error"]["code"].as_str()),
            (400, Some("ambiguous_key"))
        );
    }
    assert_eq!(up.count(), 0, "nothing ambiguous went upstream");
    for headers in [[("x-api-key", key)], [("authorization", bearer.as_str())]] {
        let resp = gw
            .get("/x")
            .header(headers[0].0, headers[0].1)
            .send()
            .await
            .expect("send");
        assert_eq!(resp.status(), 200, "{headers:?}");
    }
    gw.stop().await;
}

#[tokio::test]
async fn malformed_and_oversized_heads_get_json_errors_with_a_request_id() {
    let up = Upstream::start("a").await;
    let gw = door_config(&up).await.start().await;
    let malformed: [&[u8]; 4] = [
        b"GET /x HTTP/1.1\r\nHo st: a\r\n\r\n",
        b"GET /x HTTP/1.1\r\nHost: a\r\nno colon here\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 a TLS hello on the plain port\r\n\r\n",
        b"GET /x HTTP/9.9\r\nHost: a\r\n\r\n",
    ];
    for bytes in malformed {
        let r = refused(gw.proxy, bytes).await;
        assert_eq!(
            (r.status, r.json()["error"]["code"].as_str()),
            (400, Some("malformed_request"))
        );
        assert_ne!(r.headers.get("server").map(String::as_str), Some("Pingora"));
    }
    let many: String = (0..200).map(|i| format!("x-h{i}: v\r\n")).collect();
    let big = format!("x-big: {}\r\n", "y".repeat(70 << 10));
    for headers in [many, big] {
        let head = format!("GET /x HTTP/1.1\r\nHost: a\r\n{headers}\r\n");
        let r = refused(gw.proxy, head.as_bytes()).await;
        assert_eq!(
            (r.status, r.json()["error"]["code"].as_str()),
            (431, Some("headers_too_large"))
        );
    }
    // 100 headers (the default maximum) are fine.
    let ok: String = (0..98).map(|i| format!("x-h{i}: v\r\n")).collect();
    let mut s = TcpStream::connect(gw.proxy).await.expect("connect");
    let head = format!("GET /x HTTP/1.1\r\nHost: a\r\n{ok}\r\n");
    s.write_all(head.as_bytes()).await.expect("write");
    assert_eq!(read_response(&mut s).await.expect("response").status, 401);
    assert_eq!(up.count(), 0);
    gw.stop().await;
}

#[tokio::test]
async fn a_slow_head_is_cut_at_the_head_timeout_and_idle_connections_are_closed() {
    let up = Upstream::start("a").await;
    let gw = door_config(&up)
        .await
        .route("p", "/public", "a", TestConfig::public)
        .start()
        .await;
    // Slowloris: a byte of the head every 200 ms never completes it in 1 s.
    let mut s = TcpStream::connect(gw.proxy).await.expect("connect");
    let start = Instant::now();
    s.write_all(b"GET /public/x HTTP/1.1\r\nHost: a\r\n")
        .await
        .expect("write");
    let trickle = async {
        for b in b"x-slow: aaaaaaaaaaaaaaaaaaaa" {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let _ = s.write_all(&[*b]).await;
        }
    };
    let _ = tokio::time::timeout(Duration::from_millis(1500), trickle).await;
    let r = read_response(&mut s).await.expect("a 408");
    let took = start.elapsed();
    assert_eq!(
        (r.status, r.json()["error"]["code"].as_str()),
        (408, Some("request_timeout"))
    );
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(4),
        "{took:?}"
    );
    assert!(closed_within(&mut s, Duration::from_secs(2)).await);

    // A connection that sends nothing is closed (no answer) within the head timeout.
    let mut s = TcpStream::connect(gw.proxy).await.expect("connect");
    let start = Instant::now();
    assert!(
        closed_within(&mut s, Duration::from_secs(4)).await,
        "a silent connection was kept"
    );
    assert!(
        start.elapsed() >= Duration::from_millis(900),
        "{:?}",
        start.elapsed()
    );

    // Keep-alive works, and an idle kept-alive connection is closed after 1 s.
    let mut s = TcpStream::connect(gw.proxy).await.expect("connect");
    for _ in 0..2 {
        s.write_all(b"GET /public/x HTTP/1.1\r\nHost: a\r\n\r\n")
            .await
            .expect("write");
        assert_eq!(read_response(&mut s).await.expect("response").status, 200);
    }
    let idle = Instant::now();
    assert!(
        closed_within(&mut s, Duration::from_secs(4)).await,
        "an idle connection was kept"
    );
    let took = idle.elapsed();
    assert!(
        took >= Duration::from_millis(900),
        "closed too early: {took:?}"
    );
    gw.stop().await;
}

#[tokio::test]
async fn no_log_line_at_trace_level_holds_a_key() {
    let up = Upstream::start("a").await;
    let dir = tempfile::tempdir().expect("tmp");
    let file = binary::trace_config(dir.path(), up.addr);
    let config = dir.path().join("keygate.toml");
    binary::write_config(&config, &file);
    let key = binary::cli_key(&config, binary::TRACE_ENV);
    let p = Process::serve(dir.path(), &config, binary::TRACE_ENV);

    let client = reqwest::Client::new();
    let url = format!("http://{}/x", p.proxy);
    let ok = client
        .get(&url)
        .header("x-api-key", &key)
        .send()
        .await
        .expect("send");
    assert_eq!(ok.status(), 200);
    let twice = client
        .get(&url)
        .header("x-api-key", &key)
        .header("x-api-key", &key)
        .send()
        .await;
    assert_eq!(twice.expect("send").status(), 400);
    let malformed = format!("GET /x HTTP/1.1\r\nX-API-Key: {key}\r\nbroken line\r\n\r\n");
    assert_eq!(refused(p.proxy, malformed.as_bytes()).await.status, 400);
    let big = format!(
        "GET /x HTTP/1.1\r\nX-API-Key: {key}\r\nx-big: {}\r\n\r\n",
        "y".repeat(70 << 10)
    );
    assert_eq!(refused(p.proxy, big.as_bytes()).await.status, 431);
    let bad_version = format!("GET /x HTTP/7.0\r\nAuthorization: Bearer {key}\r\n\r\n");
    assert_eq!(refused(p.proxy, bad_version.as_bytes()).await.status, 400);

    let p = p.terminate(Duration::from_secs(15)).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let logs = p.logs();
    let verbose = logs
        .iter()
        .filter(|l| l.contains("\"TRACE\"") || l.contains("\"DEBUG\""))
        .count();
    assert!(verbose > 0, "the log was verbose: {} lines", logs.len());
    let leaks: Vec<&String> = logs.iter().filter(|l| l.contains(&key)).collect();
    assert!(leaks.is_empty(), "the key in the log:\n{leaks:#?}");
    let secret = &key[key.len() - 16..];
    assert!(
        !logs.iter().any(|l| l.contains(secret)),
        "part of the key in the log"
    );
}
