//! Usage records: built on the request path, handed to a bounded queue, written
//! in batches by [`writer::UsageWriter`]; spooled to disk rather than dropped.

pub mod journal;
mod outlet;
pub mod record;
pub mod spool;
pub mod writer;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc::{self, error::TrySendError};

use crate::config::UsageConfig;
use crate::metrics::{Metrics, UsageResult};
use crate::store::UsageStore;
pub use record::UsageRecord;
use spool::Spool;
use writer::UsageWriter;

/// The request path's handle: never blocks on the database.
#[derive(Clone)]
pub struct UsageSink {
    tx: mpsc::Sender<UsageRecord>,
    spool: Arc<Spool>,
    metrics: Arc<Metrics>,
    spool_failed: Arc<Throttled>,
}

/// An error log that fires at most once a second: a failing disk must be
/// reported, but not once per request.
#[derive(Default)]
struct Throttled {
    last_ms: std::sync::atomic::AtomicI64,
}

impl Throttled {
    fn warn(&self, e: &std::io::Error) {
        use std::sync::atomic::Ordering;
        let now = chrono::Utc::now().timestamp_millis();
        let last = self.last_ms.load(Ordering::Relaxed);
        if now - last >= 1_000
            && self
                .last_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::error!(error = %e, "usage: queue full and the spool cannot be written; records dropped");
        }
    }
}

impl UsageSink {
    /// Queues a record; if the queue is full, appends it to the spool instead.
    pub fn record(&self, r: UsageRecord) {
        let r = match self.tx.try_send(r) {
            Ok(()) => return,
            Err(TrySendError::Full(r) | TrySendError::Closed(r)) => r,
        };
        let stored = match self.spool.append(std::slice::from_ref(&r)) {
            Ok(n) => n,
            Err(e) => {
                self.spool_failed.warn(&e);
                0
            }
        };
        let result = if stored == 1 {
            UsageResult::Spooled
        } else {
            UsageResult::Dropped
        };
        self.metrics.usage(result, 1);
    }
}

/// Creates the sink and its writer (to be run on the background runtime).
pub fn pipeline(
    cfg: &UsageConfig,
    store: Arc<dyn UsageStore>,
    metrics: Arc<Metrics>,
) -> std::io::Result<(UsageSink, UsageWriter)> {
    let spool = Arc::new(Spool::open(&cfg.spool_dir, cfg.spool_max_bytes)?);
    // What crashed processes had taken from their queues goes to the spool first.
    let journal_dir = journal::dir_for(&cfg.spool_dir);
    let recovered = journal::recover(&journal_dir, &spool)?;
    if recovered > 0 {
        tracing::info!(
            records = recovered,
            "usage: recovered records a crashed process had queued"
        );
        metrics.usage(crate::metrics::UsageResult::Spooled, recovered as u64);
    }
    let journal = journal::Journal::create(&journal_dir)?;
    let (tx, rx) = mpsc::channel(cfg.queue_capacity);
    let sink = UsageSink {
        tx,
        spool: spool.clone(),
        metrics: metrics.clone(),
        spool_failed: Arc::default(),
    };
    let writer = UsageWriter {
        intake: writer::Intake {
            rx,
            journal,
            batch: Vec::with_capacity(cfg.batch_size),
            batch_size: cfg.batch_size,
        },
        outlet: outlet::Outlet {
            store,
            spool,
            metrics,
            batch_size: cfg.batch_size,
            access_log: cfg.access_log,
            store_down_until: None,
            backoff: Duration::ZERO,
        },
        flush_interval: cfg.flush_interval,
    };
    Ok((sink, writer))
}
