//! The key store behind a real PgBouncer in transaction pooling (one Postgres
//! and one PgBouncer for the module, a fresh database per test), with
//! `store.pooler = "transaction"`: revocation pushed over `listen_url` in
//! under a second, polled within `keys.sync_interval` without it; usage
//! records written through the pooler; `keygate migrate` refused without a
//! direct connection and working with one; a LISTEN through the pooler
//! detected as deaf.

use std::sync::OnceLock;
use std::time::Duration;

use keygate::config::Pooler;
use keygate::config::file::FileConfig;
use keygate::service::{CreatedKey, KeyService};
use sqlx::Connection;

use super::{blocking, key, ready_field, routed};
use crate::harness::binary;
use crate::harness::gateway::HASH_SECRET;
use crate::harness::pg::{PgServer, fresh_db_on};
use crate::harness::pgbouncer::PgBouncer;
use crate::harness::{TestConfig, TestGateway, Upstream, eventually, status};

struct Pooled {
    pg: PgServer,
    bouncer: PgBouncer,
}

/// The module's Postgres and the PgBouncer in front of it.
async fn pooled() -> &'static Pooled {
    static POOLED: OnceLock<Pooled> = OnceLock::new();
    blocking(|| {
        POOLED.get_or_init(|| {
            let pg = PgServer::start();
            let bouncer = PgBouncer::start("127.0.0.1", pg.port);
            Pooled { pg, bouncer }
        });
    })
    .await;
    POOLED.get().expect("started")
}

/// A fresh, migrated database: its direct URL and its URL through PgBouncer.
async fn database(p: &Pooled) -> (String, String) {
    let direct = fresh_db_on(&p.pg.admin_url()).await;
    let name = direct.rsplit('/').next().expect("database name");
    let via = p.bouncer.url(name);
    (direct, via)
}

/// A gateway whose store is `via` (PgBouncer), `pooler = "transaction"`.
fn behind_pgbouncer(via: &str, listen_url: Option<&str>, sync: &str, up: &Upstream) -> TestConfig {
    let listen_url = listen_url.map(str::to_string);
    let cfg = TestConfig::with_store(via).with(|f| {
        f.store.pooler = Some(Pooler::Transaction.into());
        f.store.listen_url = listen_url;
        f.keys.sync_interval = Some(sync.into());
    });
    routed(cfg, up)
}

async fn push_becomes(gw: &TestGateway, want: &str) {
    let got = eventually(Duration::from_secs(10), || async {
        ready_field(gw, "key_push").await == want
    })
    .await;
    assert!(
        got.is_some(),
        "key_push: {} (want {want})",
        ready_field(gw, "key_push").await
    );
}

/// Revokes `k` (through the pooler) and returns how long until `gw`
/// refuses it, polling every 20 ms.
async fn revocation_time(keys: &KeyService, gw: &TestGateway, k: &CreatedKey) -> Duration {
    let secret = k.secret.expose();
    assert_eq!(status(gw, secret).await, 200);
    keys.revoke(k.key.id, Some("leaked".into()), &"t".into())
        .await
        .expect("revoke through pgbouncer");
    eventually(Duration::from_secs(10), || async {
        status(gw, secret).await == 401
    })
    .await
    .expect("the revocation never reached the gateway")
}

#[tokio::test]
async fn revocation_with_listen_url_arrives_in_under_a_second() {
    let p = pooled().await;
    let (direct, via) = database(p).await;
    let up = Upstream::start("a").await;
    // Polling an hour apart: only the push over listen_url can be this fast.
    let cfg = behind_pgbouncer(&via, Some(&direct), "1h", &up);
    let keys = cfg.keys().await;
    let k = key(&keys, Default::default()).await;
    let gw = cfg.start().await;
    push_becomes(&gw, "listening").await;
    let took = revocation_time(&keys, &gw, &k).await;
    println!("revocation behind pgbouncer with listen_url: {took:?}");
    assert!(took < Duration::from_secs(1), "took {took:?}");
    gw.stop().await;
}

/// No direct connection at all: changes arrive by polling, within
/// `keys.sync_interval`; usage records are written through the pooler
/// (the rows are there, nothing spooled).
#[tokio::test]
async fn without_listen_url_revocation_arrives_within_sync_interval_and_usage_is_written() {
    let p = pooled().await;
    let (direct, via) = database(p).await;
    let up = Upstream::start("a").await;
    let sync = Duration::from_secs(2);
    let cfg = behind_pgbouncer(&via, None, "2s", &up);
    let keys = cfg.keys().await;
    let k = key(&keys, Default::default()).await;
    let gw = cfg.start().await;
    push_becomes(&gw, "polling").await;
    for _ in 0..5 {
        assert_eq!(status(&gw, k.secret.expose()).await, 200);
    }
    let db = sqlx::PgPool::connect(&direct).await.expect("direct");
    let rows = eventually(Duration::from_secs(5), || {
        let db = db.clone();
        async move {
            let n: i64 = sqlx::query_scalar("SELECT count(*) FROM usage_events WHERE status = 200")
                .fetch_one(&db)
                .await
                .expect("count usage");
            n == 5
        }
    })
    .await;
    assert!(
        rows.is_some(),
        "the 5 requests' usage rows are not in Postgres"
    );
    let took = revocation_time(&keys, &gw, &k).await;
    println!("revocation behind pgbouncer by polling every {sync:?}: {took:?}");
    // The bound is the interval; the slack covers one poll and our polling.
    assert!(took < sync + Duration::from_millis(500), "took {took:?}");
    assert_eq!(
        gw.metric("keygate_usage_events_total{result=\"spooled\"}")
            .await,
        0.0
    );
    assert_eq!(
        gw.metric("keygate_usage_events_total{result=\"dropped\"}")
            .await,
        0.0
    );
    gw.stop().await;
}

/// `listen_url` pointed at PgBouncer too: LISTEN is accepted but the probe
/// notification never comes back; `/readyz` says `deaf` and the gateway
/// stays ready (it polls).
#[tokio::test]
async fn a_listen_through_pgbouncer_is_detected_as_deaf() {
    let p = pooled().await;
    let (_, via) = database(p).await;
    let up = Upstream::start("a").await;
    let cfg = behind_pgbouncer(&via, Some(&via), "2s", &up);
    let gw = cfg.start().await;
    push_becomes(&gw, "deaf").await;
    assert_eq!(ready_field(&gw, "status").await, "ready");
    gw.stop().await;
}

/// `keygate migrate` through a transaction pooler: without a direct
/// connection it fails saying so; with `listen_url` it migrates over it.
#[tokio::test]
async fn migrate_through_pgbouncer_needs_listen_url() {
    let p = pooled().await;
    let name = format!("kg_{}", uuid::Uuid::new_v4().simple());
    let mut admin = sqlx::PgConnection::connect(&p.pg.admin_url())
        .await
        .expect("admin");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await
        .expect("create database");
    let direct = format!("postgres://postgres@127.0.0.1:{}/{name}", p.pg.port);
    let mut file: FileConfig = binary::store_config(&p.bouncer.url(&name));
    file.store.pooler = Some(Pooler::Transaction.into());
    let (code, out, err) = migrate(&file).await;
    assert_ne!(code, 0, "migrated through the pooler: {out}");
    assert!(
        err.contains("migrations need a direct connection to Postgres"),
        "{err}"
    );
    assert!(err.contains("store.listen_url"), "{err}");

    file.store.listen_url = Some(direct.clone());
    let (code, out, err) = migrate(&file).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("migrations applied"), "{out}");
    let mut db = sqlx::PgConnection::connect(&direct).await.expect("direct");
    let tables: bool = sqlx::query_scalar("SELECT to_regclass('api_keys') IS NOT NULL")
        .fetch_one(&mut db)
        .await
        .expect("schema");
    assert!(tables, "no api_keys table after migrate");
}

async fn migrate(file: &FileConfig) -> (i32, String, String) {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("keygate.toml");
    binary::write_config(&path, file);
    blocking(move || {
        let r = binary::run(&path, &["migrate"], &[("KEYGATE_HASH_SECRET", HASH_SECRET)]);
        drop(dir);
        r
    })
    .await
}
