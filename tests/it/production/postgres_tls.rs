//! The key store on Postgres over TLS (one TLS-only server for the module,
//! its certificate naming only `localhost`): `verify-full` with the right CA
//! loads keys and serves; a wrong CA, a host the certificate does not name,
//! and `require` against a server without TLS each fail at start with an
//! error naming the cause; `require` with `sslrootcert` verifies the chain
//! (as libpq's verify-ca) but not the host.

use std::path::PathBuf;
use std::sync::OnceLock;

use keygate::gateway::GatewayError;
use keygate::store::StoreError;
use keygate::store::postgres::TlsFailure;

use super::{blocking, key, ready_field, refused, routed};
use crate::harness::pg::{fresh_db, fresh_db_on};
use crate::harness::pg_tls::PgTls;
use crate::harness::tls::{TestCa, install_crypto_provider};
use crate::harness::{TestConfig, Upstream, status};

struct TlsPg {
    pg: PgTls,
    /// A CA that did not sign the server's certificate.
    other_ca: PathBuf,
}

async fn tls_pg() -> &'static TlsPg {
    static PG: OnceLock<TlsPg> = OnceLock::new();
    install_crypto_provider();
    blocking(|| {
        PG.get_or_init(|| {
            let pg = PgTls::start_for(&TestCa::new("keygate db CA"), &["localhost"]);
            let other_ca = pg.write_other_ca(&TestCa::new("unrelated CA"));
            TlsPg { pg, other_ca }
        });
    })
    .await;
    PG.get().expect("started")
}

/// A fresh migrated database on the TLS server; returns its name.
async fn database(p: &TlsPg) -> String {
    // The admin URL's default `sslmode=prefer` takes TLS without verifying.
    let url = fresh_db_on(&p.pg.server.admin_url()).await;
    url.rsplit('/').next().expect("database name").to_string()
}

/// The gateway on `url` must not start; returns the TLS failure it names.
async fn tls_failure(url: &str) -> (TlsFailure, String) {
    let err = refused(&TestConfig::with_store(url)).await;
    let msg = err.to_string();
    match err {
        GatewayError::Store(StoreError::Tls { failure, .. }) => {
            assert!(msg.contains(failure.explain()), "{msg}");
            (failure, msg)
        }
        other => panic!("not a TLS failure: {other}"),
    }
}

#[tokio::test]
async fn verify_full_with_the_right_ca_loads_keys_and_serves() {
    let p = tls_pg().await;
    let name = database(p).await;
    let up = Upstream::start("a").await;
    let cfg = routed(TestConfig::with_store(&p.pg.url(&name)), &up);
    let k = key(&cfg.keys().await, Default::default()).await;
    let gw = cfg.start().await;
    assert_eq!(ready_field(&gw, "keys").await, "loaded");
    assert_eq!(status(&gw, k.secret.expose()).await, 200);
    gw.stop().await;
}

#[tokio::test]
async fn a_wrong_ca_fails_at_start_naming_the_unknown_ca() {
    let p = tls_pg().await;
    let name = database(p).await;
    let url =
        p.pg.url_with(&name, "localhost", "verify-full", &p.other_ca);
    let (failure, msg) = tls_failure(&url).await;
    assert_eq!(failure, TlsFailure::UnknownCa, "{msg}");
    assert!(
        msg.contains("not signed by a trusted CA (check sslrootcert)"),
        "{msg}"
    );
}

/// The certificate names `localhost`; `127.0.0.1` is the same server by
/// another name.
#[tokio::test]
async fn a_host_the_certificate_does_not_name_fails_at_start() {
    let p = tls_pg().await;
    let name = database(p).await;
    let url =
        p.pg.url_with(&name, "127.0.0.1", "verify-full", p.pg.ca_path());
    let (failure, msg) = tls_failure(&url).await;
    assert_eq!(failure, TlsFailure::HostMismatch, "{msg}");
    assert!(msg.contains("does not name the host"), "{msg}");
}

#[tokio::test]
async fn require_against_a_server_without_tls_fails_at_start() {
    let plain = fresh_db().await;
    let (failure, msg) = tls_failure(&format!("{plain}?sslmode=require")).await;
    assert_eq!(failure, TlsFailure::ServerWithoutTls, "{msg}");
    assert!(msg.contains("does not accept TLS"), "{msg}");
}

/// libpq's rule, which sqlx alone does not follow: `require` with a root
/// certificate checks the chain (a wrong CA fails), not the host name.
#[tokio::test]
async fn require_with_sslrootcert_verifies_the_chain_not_the_host() {
    let p = tls_pg().await;
    let name = database(p).await;
    let wrong = p.pg.url_with(&name, "127.0.0.1", "require", &p.other_ca);
    assert_eq!(tls_failure(&wrong).await.0, TlsFailure::UnknownCa);
    let right = p.pg.url_with(&name, "127.0.0.1", "require", p.pg.ca_path());
    let gw = TestConfig::with_store(&right).start().await;
    assert_eq!(ready_field(&gw, "keys").await, "loaded");
    gw.stop().await;
}
