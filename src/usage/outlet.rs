//! Where the writer's batches go: the store, else the spool; and the spool's
//! replay into the store once it answers again.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::record::UsageRecord;
use super::spool::Spool;
use crate::metrics::{Metrics, UsageResult};
use crate::store::UsageStore;

pub(super) const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

pub struct Outlet {
    pub(super) store: Arc<dyn UsageStore>,
    pub(super) spool: Arc<Spool>,
    pub(super) metrics: Arc<Metrics>,
    pub(super) batch_size: usize,
    pub(super) access_log: bool,
    /// While set and in the future, skip the store and spool directly.
    pub(super) store_down_until: Option<Instant>,
    pub(super) backoff: Duration,
}

impl Outlet {
    fn store_up(&self) -> bool {
        self.store_down_until.is_none_or(|t| Instant::now() >= t)
    }

    fn store_failed(&mut self, why: &str) {
        if self.store_down_until.is_none() {
            tracing::warn!(
                error = why,
                "usage: store unavailable; spooling records to disk"
            );
        }
        self.backoff = (self.backoff * 2).clamp(Duration::from_millis(250), Duration::from_secs(5));
        self.store_down_until = Some(Instant::now() + self.backoff);
    }

    fn store_ok(&mut self) {
        if self.store_down_until.take().is_some() {
            tracing::info!("usage: store reachable again");
        }
        self.backoff = Duration::ZERO;
    }

    fn written(&self, batch: &[UsageRecord]) {
        self.metrics.usage(UsageResult::Written, batch.len() as u64);
    }

    pub(super) fn log_access(&self, batch: &[UsageRecord]) {
        if self.access_log {
            for r in batch {
                access_log(r);
            }
        }
    }

    /// Writes the batch to the store within `limit`, else to the spool.
    pub(super) async fn flush(&mut self, batch: &[UsageRecord], limit: Duration) {
        if batch.is_empty() {
            return;
        }
        self.log_access(batch);
        if self.store_up() {
            match tokio::time::timeout(limit, self.store.write_usage(batch)).await {
                Ok(Ok(_)) => {
                    self.store_ok();
                    self.written(batch);
                    return;
                }
                Ok(Err(e)) => self.store_failed(&e.to_string()),
                Err(_) => self.store_failed("write timed out"),
            }
        }
        self.to_spool(batch);
    }

    pub(super) fn to_spool(&self, batch: &[UsageRecord]) {
        if batch.is_empty() {
            return;
        }
        let stored = self.spool.append(batch).unwrap_or_else(|e| {
            tracing::error!(error = %e, records = batch.len(), "usage: cannot write the spool; records dropped");
            0
        });
        self.metrics.usage(UsageResult::Spooled, stored as u64);
        let dropped = batch.len() - stored;
        if dropped > 0 {
            self.metrics.usage(UsageResult::Dropped, dropped as u64);
            tracing::warn!(dropped, "usage: spool full; records dropped");
        }
    }

    /// Writes spooled segments to the store, oldest first, while it answers.
    pub(super) async fn replay(&mut self) {
        if !self.store_up() {
            return;
        }
        if self.spool.has_open_data() {
            if let Err(e) = self.spool.seal() {
                tracing::error!(error = %e, "usage: cannot seal the spool");
                return;
            }
        }
        let Ok(segments) = self.spool.segments() else {
            return;
        };
        for path in segments {
            let (records, damaged) = match Spool::read(&path) {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(error = %e, path = %path.display(), "usage: cannot read a spool segment");
                    return;
                }
            };
            if damaged > 0 {
                self.metrics.usage(UsageResult::Dropped, damaged as u64);
                tracing::warn!(damaged, path = %path.display(), "usage: damaged spool lines skipped");
            }
            for chunk in records.chunks(self.batch_size.max(1)) {
                match tokio::time::timeout(WRITE_TIMEOUT, self.store.write_usage(chunk)).await {
                    Ok(Ok(_)) => self.written(chunk),
                    Ok(Err(e)) => return self.store_failed(&e.to_string()),
                    Err(_) => return self.store_failed("replay timed out"),
                }
            }
            self.store_ok();
            if let Err(e) = self.spool.remove(&path) {
                tracing::error!(error = %e, "usage: cannot remove a replayed segment");
                return;
            }
            tracing::info!(records = records.len(), "usage: replayed a spool segment");
        }
    }
}

/// One line per request, target `keygate::access`: the key's id, never the key.
fn access_log(r: &UsageRecord) {
    tracing::info!(
        target: "keygate::access",
        request_id = %r.request_id,
        key_id = ?r.key_id,
        route = r.route.as_deref().unwrap_or("-"),
        method = %r.method,
        status = r.status,
        outcome = r.outcome.as_str(),
        latency_us = r.latency_us,
        bytes_in = r.bytes_in,
        bytes_out = r.bytes_out,
        client_ip = ?r.client_ip,
    );
}
