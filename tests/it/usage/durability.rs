//! Nothing lost: a Postgres outage under load, SIGTERM with Postgres up and
//! down (the spool replayed on the next start), and a full spool that drops
//! and counts while the gateway keeps serving.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::{load, request_ids, rows, wait_rows};
use crate::harness::binary::Process;
use crate::harness::pg::{PgServer, fresh_db_on};
use crate::harness::{TestConfig, Upstream, eventually};

#[tokio::test]
async fn postgres_outage_under_load_loses_and_duplicates_nothing() {
    let mut server = tokio::task::spawn_blocking(PgServer::start)
        .await
        .expect("join");
    let db = fresh_db_on(&server.admin_url()).await;
    let up = Upstream::start("a").await;
    let cfg = TestConfig::with_store(&db)
        .upstream("a", &[up.addr], |_| {})
        .route("p", "/", "a", TestConfig::public);
    let gw = cfg.start().await;
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = load(gw.url("/x"), stop.clone(), 4);
    tokio::time::sleep(Duration::from_millis(700)).await;
    server = tokio::task::spawn_blocking(move || {
        server.stop();
        server
    })
    .await
    .expect("join");
    // Longer than the store's 3 s connection timeout, so batches must spool.
    tokio::time::sleep(Duration::from_millis(4500)).await;
    server = tokio::task::spawn_blocking(move || {
        server.restart();
        server
    })
    .await
    .expect("join");
    tokio::time::sleep(Duration::from_millis(700)).await;
    stop.store(true, Ordering::Relaxed);
    let answered = traffic.await.expect("load");
    assert!(answered.len() > 100, "load ran: {}", answered.len());

    let pool = sqlx::PgPool::connect(&db).await.expect("pool");
    let n = wait_rows(&pool, answered.len() as i64, Duration::from_secs(20)).await;
    let ids = request_ids(&pool).await;
    let distinct: HashSet<&String> = ids.iter().collect();
    assert_eq!(distinct.len(), ids.len(), "no duplicates");
    let missing: Vec<&String> = answered
        .iter()
        .filter(|id| !distinct.contains(id))
        .collect();
    assert!(
        missing.is_empty(),
        "{} answered requests have no row, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    assert_eq!(n as usize, answered.len(), "no gaps, nothing extra");
    assert!(
        gw.metric("keygate_usage_events_total{result=\"spooled\"}")
            .await
            > 0.0,
        "the outage went through the spool"
    );
    assert_eq!(
        gw.metric("keygate_usage_events_total{result=\"dropped\"}")
            .await,
        0.0
    );
    gw.stop().await;
    drop(server);
}

/// The built binary's working directory, config file and environment.
struct Binary<'a> {
    dir: &'a Path,
    config: &'a Path,
    env: &'a [(&'a str, &'a str)],
}

impl Binary<'_> {
    fn serve(&self) -> Process {
        Process::serve(self.dir, self.config, self.env)
    }
}

/// Round 1: Postgres up. The 5 s flush interval means records are still
/// queued when SIGTERM arrives; the stop must write them.
async fn sigterm_with_postgres_up(bin: &Binary<'_>, pool: &sqlx::PgPool) {
    let p = bin.serve();
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = load(format!("http://{}/x", p.proxy), stop.clone(), 4);
    tokio::time::sleep(Duration::from_millis(800)).await;
    let p = p.terminate(Duration::from_secs(20)).await;
    stop.store(true, Ordering::Relaxed);
    let answered = traffic.await.expect("load");
    assert!(answered.len() > 50, "load ran: {}", answered.len());
    let ids: HashSet<String> = request_ids(pool).await.into_iter().collect();
    let missing = answered.iter().filter(|id| !ids.contains(*id)).count();
    assert_eq!(
        missing, 0,
        "every answered request has a row right after exit"
    );
    drop(p);
}

/// Round 2: Postgres down at SIGTERM: the queue goes to the spool. Returns the
/// stopped server and the ids that got a response.
async fn sigterm_with_postgres_down(
    bin: &Binary<'_>,
    mut server: PgServer,
) -> (PgServer, Vec<String>) {
    let p = bin.serve();
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = load(format!("http://{}/x", p.proxy), stop.clone(), 4);
    tokio::time::sleep(Duration::from_millis(500)).await;
    server = tokio::task::spawn_blocking(move || {
        server.stop();
        server
    })
    .await
    .expect("join");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let p = p.terminate(Duration::from_secs(30)).await;
    stop.store(true, Ordering::Relaxed);
    let answered2 = traffic.await.expect("load");
    drop(p);
    let spooled: Vec<_> = std::fs::read_dir(bin.dir.join("data/spool"))
        .expect("spool dir")
        .collect();
    assert!(
        !spooled.is_empty(),
        "the stop spooled what it could not write"
    );
    (server, answered2)
}

/// The next start replays the spool: every answered request of round 2 has a row.
async fn restart_replays_the_spool(
    bin: &Binary<'_>,
    db: &str,
    mut server: PgServer,
    before: i64,
    answered2: Vec<String>,
) {
    server = tokio::task::spawn_blocking(move || {
        server.restart();
        server
    })
    .await
    .expect("join");
    let p = bin.serve();
    let pool = sqlx::PgPool::connect(db).await.expect("pool");
    let want = before + answered2.len() as i64;
    let n = wait_rows(&pool, want, Duration::from_secs(20)).await;
    let ids: HashSet<String> = request_ids(&pool).await.into_iter().collect();
    let missing = answered2.iter().filter(|id| !ids.contains(*id)).count();
    assert_eq!(
        missing, 0,
        "every answered request has a row after the restart replayed the spool"
    );
    assert!(n >= want);
    drop(p);
    drop(server);
}

#[tokio::test]
async fn sigterm_under_load_leaves_a_row_for_every_response() {
    let mut server = tokio::task::spawn_blocking(PgServer::start)
        .await
        .expect("join");
    let db = fresh_db_on(&server.admin_url()).await;
    let up = Upstream::start("a").await;
    let dir = tempfile::tempdir().expect("tmp");
    let config = dir.path().join("keygate.toml");
    let mut file = crate::harness::binary::serving_config(&db, up.addr);
    file.gateway.threads = Some(2);
    file.usage.flush_interval = Some("5s".into());
    crate::harness::binary::write_config(&config, &file);
    let env = [("KEYGATE_HASH_SECRET", crate::harness::gateway::HASH_SECRET)];
    let pool = sqlx::PgPool::connect(&db).await.expect("pool");
    let bin = Binary {
        dir: dir.path(),
        config: &config,
        env: &env,
    };

    sigterm_with_postgres_up(&bin, &pool).await;

    // Round 2: Postgres down at SIGTERM: the queue goes to the spool, and the
    // next start replays it.
    let before = rows(&pool).await;
    pool.close().await;
    let answered2;
    (server, answered2) = sigterm_with_postgres_down(&bin, server).await;
    restart_replays_the_spool(&bin, &db, server, before, answered2).await;
}

#[tokio::test]
async fn a_full_spool_drops_and_counts_while_serving() {
    let dead = format!(
        "postgres://postgres@127.0.0.1:{}/nothing",
        crate::harness::procs::free_port()
    );
    let up = Upstream::start("a").await;
    let cfg = TestConfig::with_store(&dead)
        .upstream("a", &[up.addr], |_| {})
        .route("p", "/", "a", TestConfig::public)
        .with(|f| f.usage.spool_max_size = Some("8KiB".into()));
    let gw = cfg.start().await;
    let statuses: Vec<u16> = futures::future::join_all(
        (0..200).map(|_| async { gw.get("/x").send().await.expect("send").status().as_u16() }),
    )
    .await;
    let refused: Vec<&u16> = statuses.iter().filter(|s| **s != 200).collect();
    assert!(refused.is_empty(), "the gateway keeps serving: {refused:?}");
    let counted = eventually(Duration::from_secs(5), || async {
        gw.metric("keygate_usage_events_total{result=\"spooled\"}")
            .await
            + gw.metric("keygate_usage_events_total{result=\"dropped\"}")
                .await
            == 200.0
    })
    .await;
    assert!(
        counted.is_some(),
        "every record is either spooled or counted as dropped"
    );
    let dropped = gw
        .metric("keygate_usage_events_total{result=\"dropped\"}")
        .await;
    assert!(
        dropped > 100.0,
        "8 KiB holds few records; dropped {dropped}"
    );
    let used: u64 = std::fs::read_dir(cfg.spool_dir())
        .expect("dir")
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len())
        .sum();
    assert!(used <= 8 * 1024, "spool stays within its bound: {used}");
    gw.stop().await;
}
