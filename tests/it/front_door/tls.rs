//! TLS termination: HTTP/1.1 and HTTP/2 (ALPN) with the same policy, headers
//! and rejections; the certificate chosen by SNI; bad certificate files are
//! configuration errors naming the file; certificates swapped on reload;
//! curl with the test CA over HTTP/2.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use http::Version;
use keygate::config::Config;
use keygate::ratelimit::window::Limits;
use rustls::pki_types::ServerName;

use super::{Certs, Reply, TlsClient, client_config, der, presented, tls_addr, with_tls};
use crate::harness::gateway::HASH_SECRET;
use crate::harness::{StoreKind, TestConfig, Upstream, key_spec};

/// A keyed catch-all route to `up` on SQLite, with a TLS listener serving `certs`.
async fn keyed(up: &Upstream, certs: &Certs) -> TestConfig {
    let cfg = TestConfig::new(StoreKind::Sqlite)
        .await
        .upstream("a", &[up.addr], |_| {})
        .route("r", "/", "a", |_| {});
    with_tls(cfg, &certs.pairs())
}

/// Header names that differ between HTTP/1.1 and HTTP/2 by protocol, not policy.
const HOP: &[&str] = &["connection", "keep-alive", "transfer-encoding", "date"];

fn names(r: &Reply) -> BTreeSet<String> {
    r.headers
        .keys()
        .map(|k| k.as_str().to_string())
        .filter(|k| !HOP.contains(&k.as_str()))
        .collect()
}

/// Missing key, a good key (limit 1/minute), the same key again: the three
/// replies, each checked for what any protocol must show.
async fn three_requests(client: &TlsClient, url: &str, key: &str, version: Version) -> [Reply; 3] {
    let missing = client.get(url, &[]).await;
    assert_eq!((missing.status, missing.version), (401, version));
    assert_eq!(missing.json()["error"]["code"], "missing_key");
    assert_eq!(
        missing.json()["error"]["request_id"],
        missing.header("x-request-id")
    );
    assert!(missing.headers.contains_key("www-authenticate"));
    let ok = client.get(url, &[("x-api-key", key)]).await;
    assert_eq!((ok.status, ok.version), (200, version), "{ok:?}");
    assert_eq!(ok.body, "upstream a");
    assert_eq!(ok.header("x-ratelimit-limit"), "1");
    assert_eq!(ok.header("x-ratelimit-remaining"), "0");
    let limited = client.get(url, &[("x-api-key", key)]).await;
    assert_eq!((limited.status, limited.version), (429, version));
    assert_eq!(limited.json()["error"]["code"], "rate_limited");
    assert!(limited.headers.contains_key("retry-after"));
    assert_eq!(limited.header("x-ratelimit-remaining"), "0");
    [missing, ok, limited]
}

#[tokio::test]
async fn http1_and_http2_share_policy_headers_and_rejections() {
    let certs = Certs::new();
    let up = Upstream::start("a").await;
    let cfg = keyed(&up, &certs).await;
    let spec = || keygate::keys::model::KeySpec {
        rate_limits: Limits {
            minute: Some(1),
            ..Limits::default()
        },
        ..key_spec("tls-owner")
    };
    let keys = cfg.keys().await;
    let k1 = keys.create(spec(), &"t".into()).await.expect("key");
    let k2 = keys.create(spec(), &"t".into()).await.expect("key");
    let gw = cfg.start().await;
    let url = format!("https://localhost:{}/x", tls_addr(&gw).port());

    let h1 = TlsClient::new(&certs.ca, Version::HTTP_11);
    let r1 = three_requests(&h1, &url, k1.secret.expose(), Version::HTTP_11).await;
    let seen1 = up.last();
    let h2 = TlsClient::new(&certs.ca, Version::HTTP_2);
    let r2 = three_requests(&h2, &url, k2.secret.expose(), Version::HTTP_2).await;
    let seen2 = up.last();

    for (a, b) in r1.iter().zip(&r2) {
        assert_eq!(names(a), names(b), "the same headers on both protocols");
    }
    // The upstream sees the same identity and forwarding headers from both.
    let identity = |s: &crate::harness::upstream::Seen| {
        let mut h = s.keygate_headers();
        h.remove("x-keygate-key-id");
        h
    };
    assert_eq!(identity(&seen1), identity(&seen2));
    assert_eq!(
        seen1.header("x-keygate-key-id"),
        Some(k1.key.id.to_string().as_str())
    );
    assert_eq!(
        seen2.header("x-keygate-key-id"),
        Some(k2.key.id.to_string().as_str())
    );
    assert_eq!(seen2.header("x-keygate-owner-id"), Some("tls-owner"));
    for s in [&seen1, &seen2] {
        assert_eq!(s.header("x-api-key"), None, "the key is not forwarded");
        assert_eq!(s.header("x-forwarded-proto"), Some("https"), "{s:?}");
        assert_eq!(
            s.header("x-forwarded-host"),
            Some(format!("localhost:{}", tls_addr(&gw).port()).as_str())
        );
    }
    assert_eq!(up.count(), 2, "only the admitted requests went upstream");
    gw.stop().await;
}

#[tokio::test]
async fn sni_picks_the_certificate_by_name_and_the_first_is_the_default() {
    let certs = Certs::new();
    let up = Upstream::start("a").await;
    let gw = keyed(&up, &certs).await.start().await;
    let addr = tls_addr(&gw);
    let (a, b) = (
        der(&certs.a.cert_pem).to_vec(),
        der(&certs.b.cert_pem).to_vec(),
    );
    assert_eq!(presented(&certs, addr, Some("a.example")).await, a);
    assert_eq!(presented(&certs, addr, Some("b.example")).await, b);
    assert_eq!(
        presented(&certs, addr, Some("API.B.example")).await,
        b,
        "wildcard, any case"
    );
    assert_eq!(
        presented(&certs, addr, Some("other.example")).await,
        a,
        "unknown: default"
    );
    assert_eq!(presented(&certs, addr, None).await, a, "no SNI: default");
    // A client that verifies: b.example is served b's certificate, valid for it.
    let config = Arc::new(client_config(&certs.ca, &[b"http/1.1"]));
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(ServerName::try_from("x.b.example").expect("name"), tcp)
        .await
        .expect("verified handshake for x.b.example");
    assert_eq!(
        tls.get_ref().1.peer_certificates().expect("certs")[0].to_vec(),
        b
    );
    gw.stop().await;
}

/// The validation error of `cfg`'s file with certificate `i` replaced.
fn cert_error(cfg: &TestConfig, cert: &Path, key: &Path) -> String {
    let mut file = cfg.file().clone();
    if let Some(tls) = file.gateway.tls.as_mut() {
        tls.certs[1].cert = cert.display().to_string();
        tls.certs[1].key = key.display().to_string();
    }
    let env = |k: &str| (k == "KEYGATE_HASH_SECRET").then(|| HASH_SECRET.to_string());
    match Config::from_file(file, Path::new("front.toml"), &env) {
        Ok(_) => panic!("{cert:?} / {key:?} accepted"),
        Err(e) => e.to_string(),
    }
}

#[tokio::test]
async fn bad_or_unreadable_certificate_files_are_config_errors_naming_the_file() {
    let certs = Certs::new();
    let up = Upstream::start("a").await;
    let cfg = keyed(&up, &certs).await;
    let good = certs.write("good", &certs.b);
    let dir = certs.dir.path();
    let dir_buf = dir.to_path_buf();
    let missing = dir.join("missing.crt");
    let garbage =
        crate::harness::tls::write_pem(dir, "garbage.crt", "not a certificate\n", 0o644, None);
    let empty_key = crate::harness::tls::write_pem(dir, "empty.key", "", 0o600, None);
    let other = certs.write("other", &certs.a);
    let cases = [
        (missing.as_path(), good.key.as_path(), vec![&missing]),
        (garbage.as_path(), good.key.as_path(), vec![&garbage]),
        // A directory cannot be read as a file (root reads any mode, so no chmod).
        (good.cert.as_path(), dir, vec![&dir_buf]),
        (good.cert.as_path(), empty_key.as_path(), vec![&empty_key]),
        // A key that is not the certificate's names both files.
        (
            good.cert.as_path(),
            other.key.as_path(),
            vec![&good.cert, &other.key],
        ),
    ];
    for (cert, key, named) in cases {
        let e = cert_error(&cfg, cert, key);
        assert!(e.contains("gateway.tls.certs[1]"), "{e}");
        for path in named {
            assert!(
                e.contains(&path.display().to_string()),
                "{path:?} not named: {e}"
            );
        }
    }
    // The CLI says the same and fails.
    let mut file = cfg.file().clone();
    if let Some(tls) = file.gateway.tls.as_mut() {
        tls.certs[0].cert = garbage.display().to_string();
    }
    let path = dir.join("keygate.toml");
    crate::harness::binary::write_config(&path, &file);
    let env = [("KEYGATE_HASH_SECRET", HASH_SECRET)];
    let (code, _, err) = crate::harness::binary::run(&path, &["check-config"], &env);
    assert_ne!(code, 0);
    assert!(
        err.contains("gateway.tls.certs[0]") && err.contains(&garbage.display().to_string()),
        "{err}"
    );
}

#[tokio::test]
async fn certificates_are_swapped_on_reload() {
    let certs = Certs::new();
    let up = Upstream::start("a").await;
    let cfg = keyed(&up, &certs)
        .await
        .route("p", "/public", "a", TestConfig::public);
    let gw = cfg.start().await;
    let addr = tls_addr(&gw);
    let h2 = TlsClient::new(&certs.ca, Version::HTTP_2);
    let url = format!("https://localhost:{}/public/x", addr.port());
    assert_eq!(
        h2.get(&url, &[]).await.status,
        200,
        "a connection opened before"
    );
    assert_eq!(
        presented(&certs, addr, Some("b.example")).await,
        der(&certs.b.cert_pem).to_vec()
    );

    let b2 = certs.ca.issue(&["b.example"]);
    let pairs = vec![certs.write("a", &certs.a), certs.write("b2", &b2)];
    let reloaded = gw
        .running
        .as_ref()
        .expect("running")
        .reload(with_tls(cfg.clone(), &pairs).build())
        .expect("reload");
    assert!(reloaded.restart_only.is_empty(), "{reloaded:?}");

    assert_eq!(
        presented(&certs, addr, Some("b.example")).await,
        der(&b2.cert_pem).to_vec()
    );
    assert_eq!(
        presented(&certs, addr, None).await,
        der(&certs.a.cert_pem).to_vec()
    );
    let r = h2.get(&url, &[]).await;
    assert_eq!(
        (r.status, r.version),
        (200, Version::HTTP_2),
        "the old connection still serves"
    );
    assert!(
        gw.metric_reaches("keygate_config_reloads_total{result=\"ok\"}", 1.0)
            .await
    );
    gw.stop().await;
}

/// `curl` with the CA file, its output `%{http_version} %{http_code}`.
async fn curl(args: Vec<String>) -> String {
    let out = tokio::process::Command::new("curl")
        .args([
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_version} %{http_code}",
        ])
        .args(&args)
        .output()
        .await
        .expect("curl (Debian: apt-get install curl)");
    assert!(
        out.status.success(),
        "curl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn curl_speaks_http2_with_the_test_ca() {
    let certs = Certs::new();
    let up = Upstream::start("a").await;
    let cfg = keyed(&up, &certs).await;
    let k = cfg
        .keys()
        .await
        .create(key_spec("curl"), &"t".into())
        .await
        .expect("key");
    let gw = cfg.start().await;
    let port = tls_addr(&gw).port();
    let ca = certs.ca_file().display().to_string();
    let base = |host: &str| {
        vec![
            "--cacert".to_string(),
            ca.clone(),
            "--http2".into(),
            "--resolve".into(),
            format!("{host}:{port}:127.0.0.1"),
            format!("https://{host}:{port}/x"),
        ]
    };
    let mut with_key = base("localhost");
    with_key.extend(["-H".into(), format!("x-api-key: {}", k.secret.expose())]);
    assert_eq!(curl(with_key).await, "2 200");
    assert_eq!(curl(base("localhost")).await, "2 401");
    // curl checks the name: only b's certificate is valid for b.example.
    assert_eq!(curl(base("b.example")).await, "2 401");
    gw.stop().await;
}
