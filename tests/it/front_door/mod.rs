//! The front door (issue 14, CONTRACT §9) with real clients and servers:
//! `tls`: HTTP/1.1 and HTTP/2 over TLS with the same policy, certificates by
//! SNI, bad certificate files, certificates swapped on reload, curl;
//! `grpc`: a tonic server and client through the TLS listener, rejections as
//! gRPC statuses; `websocket`: tokio-tungstenite through keygate, plain and
//! TLS; `reload`: reloads under load (the binary, SIGHUP and `keygate
//! reload`), invalid files, restart-only settings; `restart`: `serve
//! --upgrade` under load; `hostile`: ambiguous keys, malformed, oversized and
//! slow heads, idle keep-alive, no secret in trace logs.

mod grpc;
mod hostile;
mod load;
mod reload;
mod restart;
mod tls;
mod websocket;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use keygate::config::file::{CertSection, TlsSection};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

use crate::harness::procs::ScratchDir;
use crate::harness::tls::{Issued, TestCa, write_pem};
use crate::harness::{TestConfig, TestGateway};

pub use load::Load;

/// A test CA and two server certificates, written as PEM files: `a` (the
/// default: `localhost`, `a.example`, `127.0.0.1`) and `b` (`b.example`,
/// `*.b.example`).
pub struct Certs {
    pub ca: TestCa,
    pub a: Issued,
    pub b: Issued,
    pub dir: ScratchDir,
}

/// A certificate's and its key's files.
#[derive(Clone, Debug)]
pub struct Pair {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Certs {
    pub fn new() -> Certs {
        crate::harness::tls::install_crypto_provider();
        let ca = TestCa::new("keygate front door CA");
        let a = ca.issue(&["localhost", "a.example", "127.0.0.1"]);
        let b = ca.issue(&["b.example", "*.b.example"]);
        Certs {
            ca,
            a,
            b,
            dir: ScratchDir::new("front-certs"),
        }
    }

    /// Writes `issued` as `<name>.crt` and `<name>.key`.
    pub fn write(&self, name: &str, issued: &Issued) -> Pair {
        let dir = self.dir.path();
        Pair {
            cert: write_pem(dir, &format!("{name}.crt"), &issued.cert_pem, 0o644, None),
            key: write_pem(dir, &format!("{name}.key"), &issued.key_pem, 0o600, None),
        }
    }

    /// `a` then `b`, written.
    pub fn pairs(&self) -> Vec<Pair> {
        vec![self.write("a", &self.a), self.write("b", &self.b)]
    }

    pub fn ca_file(&self) -> PathBuf {
        self.ca.write_ca(&self.dir, "ca.crt")
    }
}

/// `[gateway.tls]` on a free port with `pairs` (the first is the default).
pub fn tls_section(pairs: &[Pair]) -> TlsSection {
    TlsSection {
        listen: Some("127.0.0.1:0".into()),
        certs: pairs
            .iter()
            .map(|p| CertSection {
                cert: p.cert.display().to_string(),
                key: p.key.display().to_string(),
            })
            .collect(),
        ..TlsSection::default()
    }
}

/// The config with a TLS listener serving `pairs`.
pub fn with_tls(cfg: TestConfig, pairs: &[Pair]) -> TestConfig {
    let section = tls_section(pairs);
    cfg.with(|f| f.gateway.tls = Some(section))
}

/// Where a gateway's TLS listener is.
pub fn tls_addr(gw: &TestGateway) -> SocketAddr {
    gw.running
        .as_ref()
        .and_then(|r| r.addrs().tls)
        .expect("a TLS listener")
}

/// The DER of the first certificate in `pem`.
pub fn der(pem: &str) -> CertificateDer<'static> {
    CertificateDer::from_pem_slice(pem.as_bytes()).expect("PEM certificate")
}

/// A rustls client configuration (ring) trusting only `ca`, with `alpn`.
pub fn client_config(ca: &TestCa, alpn: &[&[u8]]) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(der(&ca.cert_pem())).expect("CA root");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config
}

/// An HTTPS client (hyper over rustls) speaking only HTTP/1.1 or only HTTP/2
/// (chosen by ALPN), trusting the test CA.
#[derive(Clone)]
pub struct TlsClient {
    inner: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

/// A response, read whole.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub version: http::Version,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }

    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .map(|v| v.to_str().expect("ascii header"))
            .unwrap_or_else(|| panic!("no {name} in {:?}", self.headers))
    }
}

impl TlsClient {
    pub fn new(ca: &TestCa, version: http::Version) -> TlsClient {
        let builder = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(client_config(ca, &[]))
            .https_only();
        let h2 = version == http::Version::HTTP_2;
        let connector = if h2 {
            builder.enable_http2().build()
        } else {
            builder.enable_http1().build()
        };
        let inner = Client::builder(hyper_util::rt::TokioExecutor::new())
            .http2_only(h2)
            .build(connector);
        TlsClient { inner }
    }

    pub async fn get(&self, url: &str, headers: &[(&str, &str)]) -> Reply {
        let mut req = http::Request::get(url);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(Full::new(Bytes::new())).expect("request");
        let resp = tokio::time::timeout(Duration::from_secs(10), self.inner.request(req))
            .await
            .expect("answered within 10 s")
            .unwrap_or_else(|e| panic!("GET {url}: {e:?}"));
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.expect("body").to_bytes();
        Reply {
            status: parts.status.as_u16(),
            version: parts.version,
            headers: parts.headers,
            body,
        }
    }
}

/// Rows in `usage_events` of this config's database.
pub async fn usage_rows(db_url: &str) -> i64 {
    let sql = "SELECT count(*) FROM usage_events";
    if db_url.starts_with("sqlite://") {
        let pool = sqlx::SqlitePool::connect(db_url).await.expect("sqlite");
        sqlx::query_scalar(sql)
            .fetch_one(&pool)
            .await
            .expect("count")
    } else {
        let pool = sqlx::PgPool::connect(db_url).await.expect("postgres");
        sqlx::query_scalar(sql)
            .fetch_one(&pool)
            .await
            .expect("count")
    }
}

/// Waits (up to 15 s) for `want` usage rows; returns how many there are.
pub async fn wait_usage_rows(db_url: &str, want: i64) -> i64 {
    let _ = crate::harness::eventually(Duration::from_secs(15), || async {
        usage_rows(db_url).await >= want
    })
    .await;
    usage_rows(db_url).await
}

/// Accepts any certificate and remembers the one it was shown.
#[derive(Debug)]
struct Shown {
    seen: Mutex<Option<CertificateDer<'static>>>,
    inner: Arc<rustls::client::WebPkiServerVerifier>,
}

impl ServerCertVerifier for Shown {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        *self.seen.lock().expect("lock") = Some(end_entity.clone().into_owned());
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(m, c, d)
    }

    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(m, c, d)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// The certificate the listener at `addr` presents for `sni` (`None`: no SNI).
pub async fn presented(certs: &Certs, addr: std::net::SocketAddr, sni: Option<&str>) -> Vec<u8> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(der(&certs.ca.cert_pem())).expect("root");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let inner = rustls::client::WebPkiServerVerifier::builder_with_provider(roots.into(), provider)
        .build()
        .expect("verifier");
    let shown = Arc::new(Shown {
        seen: Mutex::new(None),
        inner,
    });
    let mut config = client_config(&certs.ca, &[b"http/1.1"]);
    config.dangerous().set_certificate_verifier(shown.clone());
    // An IP address as the server name sends no SNI.
    let name = match sni {
        Some(n) => ServerName::try_from(n.to_string()).expect("name"),
        None => ServerName::IpAddress(addr.ip().into()),
    };
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .expect("handshake");
    let seen = shown.seen.lock().expect("lock").clone();
    seen.expect("a certificate").to_vec()
}
