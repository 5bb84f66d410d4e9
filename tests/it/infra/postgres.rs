//! PgBouncer in transaction mode and Postgres with TLS.

use std::time::Duration;

use sqlx::{Connection, PgConnection};

use super::blocking;
use crate::harness::pg::PgServer;
use crate::harness::pg_tls::PgTls;
use crate::harness::pgbouncer::PgBouncer;
use crate::harness::tls::{TestCa, install_crypto_provider};

async fn connect(url: &str) -> PgConnection {
    PgConnection::connect(url)
        .await
        .unwrap_or_else(|e| panic!("connect {url}: {e}"))
}

/// Unnamed statements (`persistent(false)`) work through transaction pooling;
/// the admin console reports `pool_mode = transaction`.
#[tokio::test]
async fn pgbouncer_transaction_mode_unnamed_statements() {
    let pg = blocking(PgServer::start).await;
    let port = pg.port;
    let bouncer = blocking(move || PgBouncer::start("127.0.0.1", port)).await;
    let mut a = connect(&bouncer.url("postgres")).await;
    let mut b = connect(&bouncer.url("postgres")).await;
    for i in 0..5i32 {
        for conn in [&mut a, &mut b] {
            let v: i32 = sqlx::query_scalar("SELECT $1::int4 + 1")
                .bind(i)
                .persistent(false)
                .fetch_one(&mut *conn)
                .await
                .expect("unnamed statement through pgbouncer");
            assert_eq!(v, i + 1);
        }
    }
    let mut admin = connect(&bouncer.admin_url()).await;
    let rows = sqlx::raw_sql(sqlx::AssertSqlSafe("SHOW POOLS".to_string()))
        .fetch_all(&mut admin)
        .await
        .expect("SHOW POOLS");
    let modes: Vec<String> = rows
        .iter()
        .map(|r| sqlx::Row::get::<String, _>(r, "pool_mode"))
        .collect();
    assert!(modes.contains(&"transaction".to_string()), "{modes:?}");
}

/// The bug the next issue fixes: sqlx's default named statements (`sqlx_s_N`)
/// are prepared on whichever server connection the transaction got; a second
/// client connection preparing the same name on the same server connection
/// fails with `prepared statement "sqlx_s_1" already exists`. (One client
/// alone reusing its statement happens to work: with no other traffic
/// PgBouncer hands it the same server connection again.)
#[tokio::test]
async fn pgbouncer_named_statements_collide() {
    let pg = blocking(PgServer::start).await;
    let port = pg.port;
    let bouncer = blocking(move || PgBouncer::start("127.0.0.1", port)).await;
    let mut a = connect(&bouncer.url("postgres")).await;
    let mut b = connect(&bouncer.url("postgres")).await;
    let q = "SELECT 1::int4";
    let first: i32 = sqlx::query_scalar(q)
        .fetch_one(&mut a)
        .await
        .expect("first use");
    assert_eq!(first, 1);
    let second = sqlx::query_scalar::<_, i32>(q).fetch_one(&mut b).await;
    let err = second.expect_err("a second client's sqlx_s_1 on the same server connection");
    let msg = err.to_string();
    assert!(
        msg.contains("prepared statement \"sqlx_s_1\" already exists"),
        "{msg}"
    );
}

/// LISTEN through a transaction pooler: the LISTEN runs on a server
/// connection the client gives back right after, so a NOTIFY sent directly
/// to Postgres does not reach the client.
#[tokio::test]
async fn pgbouncer_listen_gets_no_notifications() {
    let pg = blocking(PgServer::start).await;
    let port = pg.port;
    let bouncer = blocking(move || PgBouncer::start("127.0.0.1", port)).await;
    let mut listener = sqlx::postgres::PgListener::connect(&bouncer.url("postgres"))
        .await
        .expect("listener through pgbouncer");
    listener
        .listen("kg_infra")
        .await
        .expect("LISTEN via pgbouncer");
    let mut direct = connect(&pg.admin_url()).await;
    sqlx::raw_sql("NOTIFY kg_infra, 'hello'")
        .execute(&mut direct)
        .await
        .expect("NOTIFY");
    let got = tokio::time::timeout(Duration::from_secs(2), listener.try_recv()).await;
    assert!(
        !matches!(got, Ok(Ok(Some(_)))),
        "a notification arrived through transaction pooling: {got:?}"
    );
    // PgBouncer drops it: the listening server connection is back in the pool.
    assert!(
        bouncer
            .log()
            .contains("got packet 'A' from server when not linked"),
        "{}",
        bouncer.log()
    );
}

/// verify-full against our CA connects over TLS (by name and by IP SAN); a
/// different CA, and an unencrypted connection, are refused.
#[tokio::test]
async fn postgres_tls_verify_full() {
    install_crypto_provider();
    let (ca, pg) = blocking(|| {
        let ca = TestCa::new("keygate test CA");
        let pg = PgTls::start(&ca);
        (ca, pg)
    })
    .await;
    drop(ca);
    for host in ["localhost", "127.0.0.1"] {
        let url = pg.url_with("postgres", host, "verify-full", pg.ca_path());
        let mut c = connect(&url).await;
        let ssl: bool =
            sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
                .fetch_one(&mut c)
                .await
                .expect("pg_stat_ssl");
        assert!(ssl, "{host}: not TLS");
    }
    let other = pg.write_other_ca(&TestCa::new("unrelated CA"));
    let wrong = PgConnection::connect(&pg.url_with("postgres", "localhost", "verify-full", &other))
        .await
        .expect_err("a certificate from another CA");
    assert!(format!("{wrong:?}").contains("UnknownIssuer"), "{wrong:?}");
    let plain = PgConnection::connect(&pg.url_mode("postgres", "disable"))
        .await
        .expect_err("hostssl only");
    assert!(plain.to_string().contains("no encryption"), "{plain}");
}
