//! `kill -9` under load: what the writer had taken from the queue is in its
//! journal and reaches the store on the next start; what is lost is at most
//! what was still in the queue (one drain tick, 5 ms) plus requests answered
//! but not yet recorded. Writes are idempotent: nothing is counted twice.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::{load, request_ids, rows, wait_rows};
use crate::harness::binary::Process;
use crate::harness::pg::{PgServer, fresh_db_on};
use crate::harness::{Upstream, eventually};

/// The documented bound: records of the last 10 ms of traffic.
const LOSS_WINDOW: Duration = Duration::from_millis(10);
const BATCH: usize = 300;

#[tokio::test]
async fn sigkill_under_load_loses_at_most_the_last_10ms_and_duplicates_nothing() {
    let server = tokio::task::spawn_blocking(PgServer::start)
        .await
        .expect("join");
    let db = fresh_db_on(&server.admin_url()).await;
    let up = Upstream::start("a").await;
    let dir = tempfile::tempdir().expect("tmp");
    let config = dir.path().join("keygate.toml");
    let mut file = crate::harness::binary::serving_config(&db, up.addr);
    file.gateway.threads = Some(2);
    // Only full batches are written before the kill (each while the queue
    // keeps being drained); the rest can only come through the journal.
    file.usage.flush_interval = Some("1h".into());
    file.usage.batch_size = Some(BATCH);
    crate::harness::binary::write_config(&config, &file);
    let env = [("KEYGATE_HASH_SECRET", crate::harness::gateway::HASH_SECRET)];

    let mut p = Process::serve(dir.path(), &config, &env);
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let traffic = load(format!("http://{}/x", p.proxy), stop.clone(), 4);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    p.signal(libc::SIGKILL);
    let elapsed = started.elapsed();
    let _ = p.wait(Duration::from_secs(10)).expect("killed");
    stop.store(true, Ordering::Relaxed);
    let answered = traffic.await.expect("load");
    assert!(answered.len() > 100, "load ran: {}", answered.len());
    let pool = sqlx::PgPool::connect(&db).await.expect("pool");
    let before = rows(&pool).await;
    assert_eq!(before % BATCH as i64, 0, "only whole batches were written");

    let mut again = Process::serve(dir.path(), &config, &env);
    let rate = answered.len() as f64 / elapsed.as_secs_f64();
    let bound = (rate * LOSS_WINDOW.as_secs_f64()).ceil() as usize + 1;
    let want = (answered.len() - bound.min(answered.len())) as i64;
    wait_rows(&pool, want, Duration::from_secs(20)).await;
    // Let the replay finish, then look.
    let _ = eventually(Duration::from_secs(2), || async { false }).await;
    let ids = request_ids(&pool).await;
    let stored: HashSet<&String> = ids.iter().collect();
    assert_eq!(stored.len(), ids.len(), "no duplicates after replay");
    let lost = answered.iter().filter(|id| !stored.contains(id)).count();
    eprintln!(
        "kill -9: lost {lost} of {} at {rate:.0} req/s (bound {bound}); {before} written before, {} from the journal",
        answered.len(),
        ids.len() as i64 - before
    );
    assert!(
        lost <= bound,
        "lost {lost} of {} answered; the bound at {rate:.0} req/s is {bound}",
        answered.len()
    );
    again.signal(libc::SIGTERM);
    let _ = again.wait(Duration::from_secs(20));
    drop(server);
}
