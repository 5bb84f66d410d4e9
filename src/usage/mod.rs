//! Usage records: built on the request path, handed to a bounded queue, written
//! in batches by [`writer::UsageWriter`]; spooled to disk rather than dropped.

pub mod record;
pub mod spool;
pub mod writer;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc::{self, error::TrySendError};

use crate::config::UsageConfig;
use crate::metrics::{Metrics, UsageResult};
use crate::store::DynStore;
pub use record::UsageRecord;
use spool::Spool;
use writer::UsageWriter;

/// The request path's handle: never blocks on the database.
#[derive(Clone)]
pub struct UsageSink {
    tx: mpsc::Sender<UsageRecord>,
    spool: Arc<Spool>,
    metrics: Arc<Metrics>,
}

impl UsageSink {
    /// Queues a record; if the queue is full, appends it to the spool instead.
    pub fn record(&self, r: UsageRecord) {
        let r = match self.tx.try_send(r) {
            Ok(()) => return,
            Err(TrySendError::Full(r) | TrySendError::Closed(r)) => r,
        };
        let stored = self.spool.append(std::slice::from_ref(&r)).unwrap_or(0);
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
    store: DynStore,
    metrics: Arc<Metrics>,
) -> std::io::Result<(UsageSink, UsageWriter)> {
    let spool = Arc::new(Spool::open(&cfg.spool_dir, cfg.spool_max_bytes)?);
    let (tx, rx) = mpsc::channel(cfg.queue_capacity);
    let sink = UsageSink {
        tx,
        spool: spool.clone(),
        metrics: metrics.clone(),
    };
    let writer = UsageWriter {
        rx,
        store,
        spool,
        metrics,
        batch_size: cfg.batch_size,
        flush_interval: cfg.flush_interval,
        access_log: cfg.access_log,
        store_down_until: None,
        backoff: Duration::ZERO,
    };
    Ok((sink, writer))
}
