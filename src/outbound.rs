//! Outbound HTTP(S): the one client keygate uses to call out (webhook
//! deliveries, the secret-scanning public keys). Never on the request path.
//!
//! rustls with ring, trusting the webpki roots plus an optional CA file (a
//! private receiver's, or the tests'); every call bounded by a timeout and
//! every response body by a size, so a slow or hostile server costs a bounded
//! amount. Errors name what failed (connect, TLS, timeout, status, size) but
//! never a header or body: callers put secrets in those.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

#[derive(Debug, thiserror::Error)]
pub enum OutboundError {
    #[error("cannot read the CA file {path}: {reason}")]
    CaFile { path: String, reason: String },
    #[error("not an http(s) URL: {0}")]
    Url(String),
    #[error("request failed: {0}")]
    Request(String),
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("the response body is larger than {0} bytes")]
    TooLarge(usize),
    #[error("the response body could not be read: {0}")]
    Body(String),
}

/// A response: its status, headers and (size-bounded) body.
#[derive(Debug)]
pub struct Response {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

#[derive(Clone)]
pub struct Outbound {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl Outbound {
    /// A client trusting the webpki roots and, if given, the CAs in `ca_file` (PEM).
    pub fn new(ca_file: Option<&Path>) -> Result<Outbound, OutboundError> {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        if let Some(path) = ca_file {
            let ca_err = |reason: String| OutboundError::CaFile {
                path: path.display().to_string(),
                reason,
            };
            let pem = std::fs::read(path).map_err(|e| ca_err(e.to_string()))?;
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
                .collect::<Result<_, _>>()
                .map_err(|e| ca_err(format!("not PEM certificates: {e}")))?;
            if certs.is_empty() {
                return Err(ca_err("no certificate in it".into()));
            }
            for c in certs {
                roots.add(c).map_err(|e| ca_err(e.to_string()))?;
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| OutboundError::Request(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .build();
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Ok(Outbound { client })
    }

    /// Sends one request and reads at most `max_body` bytes of the answer,
    /// all within `timeout`.
    pub async fn send(
        &self,
        method: Method,
        url: &str,
        headers: HeaderMap,
        body: Bytes,
        timeout: Duration,
        max_body: usize,
    ) -> Result<Response, OutboundError> {
        let uri = parse_url(url)?;
        let mut req = Request::builder()
            .method(method)
            .uri(uri)
            .body(Full::new(body))
            .map_err(|e| OutboundError::Request(e.to_string()))?;
        *req.headers_mut() = headers;
        let call = async {
            let resp = self
                .client
                .request(req)
                .await
                .map_err(|e| OutboundError::Request(describe(&e)))?;
            let (parts, body) = resp.into_parts();
            let body = Limited::new(body, max_body)
                .collect()
                .await
                .map_err(|e| {
                    if e.is::<http_body_util::LengthLimitError>() {
                        OutboundError::TooLarge(max_body)
                    } else {
                        OutboundError::Body(e.to_string())
                    }
                })?
                .to_bytes();
            Ok(Response {
                status: parts.status,
                headers: parts.headers,
                body,
            })
        };
        tokio::time::timeout(timeout, call)
            .await
            .map_err(|_| OutboundError::Timeout(timeout))?
    }
}

/// An `http://` or `https://` URL with a host.
/// Request headers from static pairs, each header once.
pub fn static_headers(pairs: &[(http::HeaderName, &'static str)]) -> HeaderMap {
    pairs
        .iter()
        .map(|(name, value)| (name.clone(), http::HeaderValue::from_static(value)))
        .collect()
}

pub fn parse_url(url: &str) -> Result<Uri, OutboundError> {
    let uri: Uri = url
        .parse()
        .map_err(|_| OutboundError::Url(url.to_owned()))?;
    let scheme_ok = matches!(uri.scheme_str(), Some("http" | "https"));
    if !scheme_ok || uri.host().is_none() {
        return Err(OutboundError::Url(url.to_owned()));
    }
    Ok(uri)
}

/// The error and its causes (hyper's own message is only "client error").
fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cause = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_http_urls_with_a_host() {
        assert!(parse_url("https://example.com/hook").is_ok());
        assert!(parse_url("http://127.0.0.1:9/x").is_ok());
        for bad in [
            "ftp://example.com",
            "example.com/x",
            "https://",
            "not a url",
        ] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_missing_ca_file_is_named() {
        let Err(e) = Outbound::new(Some(Path::new("/nonexistent/ca.pem"))) else {
            panic!("a missing CA file is an error");
        };
        assert!(e.to_string().contains("/nonexistent/ca.pem"), "{e}");
    }

    #[tokio::test]
    async fn a_refused_connection_and_a_large_body_are_errors() {
        let out = Outbound::new(None).expect("client");
        let dead = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = dead.local_addr().expect("addr").port();
        drop(dead);
        let url = format!("http://127.0.0.1:{port}/");
        let t = Duration::from_secs(2);
        let r = out
            .send(Method::GET, &url, HeaderMap::new(), Bytes::new(), t, 10)
            .await;
        assert!(matches!(r, Err(OutboundError::Request(_))), "{r:?}");

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            if let Ok((mut s, _)) = listener.accept().await {
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                let body = "x".repeat(100);
                let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", body.len());
                let _ = s.write_all(head.as_bytes()).await;
                let _ = s.write_all(body.as_bytes()).await;
            }
        });
        let url = format!("http://{addr}/");
        let r = out
            .send(Method::GET, &url, HeaderMap::new(), Bytes::new(), t, 10)
            .await;
        assert!(matches!(r, Err(OutboundError::TooLarge(10))), "{r:?}");
    }
}
