//! Usage records: exactly one row per request with the right fields, nothing
//! lost through a Postgres outage under load or a SIGTERM, spool bounds, and
//! the metrics exposition. `records`: the rows' fields; `durability`: outage,
//! SIGTERM and a full spool; `crash`: kill -9 and the journal; `metrics`: the exposition.

mod crash;
mod durability;
mod metrics;
mod records;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use keygate::keys::model::KeySpec;

use crate::harness::eventually;

fn spec(owner: &str, scopes: &[&str]) -> KeySpec {
    KeySpec {
        scopes: scopes.iter().map(|s| s.to_string()).collect(),
        ..crate::harness::key_spec(owner)
    }
}

async fn rows(pool: &sqlx::PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM usage_events")
        .fetch_one(pool)
        .await
        .unwrap_or(-1)
}

async fn wait_rows(pool: &sqlx::PgPool, n: i64, timeout: Duration) -> i64 {
    let _ = eventually(timeout, || async { rows(pool).await >= n }).await;
    rows(pool).await
}

/// Sends requests with unique request ids until `stop`; returns the ids that got a response.
fn load(
    gw_url: String,
    stop: Arc<AtomicBool>,
    workers: usize,
) -> tokio::task::JoinHandle<Vec<String>> {
    tokio::spawn(async move {
        let counter = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..workers)
            .map(|_| {
                let (url, stop, counter) = (gw_url.clone(), stop.clone(), counter.clone());
                tokio::spawn(async move {
                    let client = reqwest::Client::new();
                    let mut got = Vec::new();
                    while !stop.load(Ordering::Relaxed) {
                        let id = format!("load-{}", counter.fetch_add(1, Ordering::Relaxed));
                        if let Ok(resp) = client
                            .get(&url)
                            .header("x-request-id", &id)
                            .timeout(Duration::from_secs(5))
                            .send()
                            .await
                        {
                            if resp.status().is_success() && resp.bytes().await.is_ok() {
                                got.push(id);
                            }
                        }
                    }
                    got
                })
            })
            .collect();
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap_or_default());
        }
        all
    })
}

async fn request_ids(pool: &sqlx::PgPool) -> Vec<String> {
    sqlx::query_scalar("SELECT request_id FROM usage_events")
        .fetch_all(pool)
        .await
        .expect("ids")
}
