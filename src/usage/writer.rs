//! The usage writer: drains the queue in batches, writes them to the store,
//! spools what the store cannot take, replays the spool when it can, and on
//! stop drains everything (to the store, else the spool) before returning.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};

use super::journal::Journal;
use super::record::UsageRecord;
use super::spool::Spool;
use crate::gateway::Stop;
use crate::metrics::{Metrics, UsageResult};
use crate::store::UsageStore;

const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
const FINAL_WRITE_TIMEOUT: Duration = Duration::from_secs(3);
/// How often the writer takes the queue into the journal (at most
/// `usage.flush_interval`): what `kill -9` can lose is at most this much
/// traffic, still in the queue.
pub const DRAIN_TICK: Duration = Duration::from_millis(5);

pub struct UsageWriter {
    pub(super) rx: mpsc::Receiver<UsageRecord>,
    pub(super) store: Arc<dyn UsageStore>,
    pub(super) spool: Arc<Spool>,
    pub(super) journal: Journal,
    pub(super) metrics: Arc<Metrics>,
    pub(super) batch_size: usize,
    pub(super) flush_interval: Duration,
    pub(super) access_log: bool,
    /// While set and in the future, skip the store and spool directly.
    pub(super) store_down_until: Option<Instant>,
    pub(super) backoff: Duration,
}

impl UsageWriter {
    /// Drains the queue on a short tick rather than waiting in `recv`: a
    /// receiver waiting in `recv` is woken by every record (a futex wake and a
    /// context switch per request), one polled on a timer by none.
    pub async fn run(mut self, mut stop: watch::Receiver<Option<Stop>>) {
        let mut batch = Vec::with_capacity(self.batch_size);
        let drain_every = self.flush_interval.min(DRAIN_TICK);
        // What a previous run left (its spool, a crashed process's journal) first.
        self.replay().await;
        let mut last_flush = Instant::now();
        let how = loop {
            tokio::select! {
                _ = tokio::time::sleep(drain_every) => {}
                changed = stop.changed() => {
                    let how: Option<Stop> = *stop.borrow();
                    match (changed, how) {
                        (_, Some(how)) => break how,
                        (Err(_), None) => break Stop::Fast,
                        (Ok(()), None) => continue,
                    }
                }
            }
            if self.drain(&mut batch).await {
                last_flush = Instant::now();
            }
            self.metrics.usage_queue_depth.set(self.rx.len() as i64);
            if last_flush.elapsed() >= self.flush_interval {
                self.flush(&mut batch, WRITE_TIMEOUT).await;
                self.replay().await;
                last_flush = Instant::now();
            }
        };
        self.finish(batch, how).await;
    }

    /// Takes what is queued into `batch` and the journal, flushing full
    /// batches; returns whether it flushed.
    async fn drain(&mut self, batch: &mut Vec<UsageRecord>) -> bool {
        let mut flushed = false;
        loop {
            let start = batch.len();
            while batch.len() < self.batch_size {
                match self.rx.try_recv() {
                    Ok(r) => batch.push(r),
                    Err(_) => break,
                }
            }
            if let Err(e) = self.journal.append(&batch[start..]) {
                // The records are still in memory and will be written; only a
                // crash before then would lose them.
                tracing::error!(error = %e, "usage: cannot write the journal");
            }
            if batch.len() < self.batch_size {
                return flushed;
            }
            self.flush(batch, WRITE_TIMEOUT).await;
            flushed = true;
        }
    }

    /// Everything still queued goes to the store (graceful) or the spool (fast).
    async fn finish(mut self, mut batch: Vec<UsageRecord>, how: Stop) {
        self.rx.close();
        while let Some(r) = self.rx.recv().await {
            batch.push(r);
        }
        let n = batch.len();
        match how {
            Stop::Graceful => self.flush(&mut batch, FINAL_WRITE_TIMEOUT).await,
            Stop::Fast => {
                self.log_access(&batch);
                self.to_spool(&batch);
            }
        }
        // Every record is settled: a clean exit leaves no journal behind.
        self.settled();
        self.journal.remove();
        if let Err(e) = self.spool.seal() {
            tracing::error!(error = %e, "usage: cannot seal the spool");
        }
        self.metrics.usage_queue_depth.set(0);
        tracing::info!(
            records = n,
            spool_bytes = self.spool.used_bytes(),
            "usage: flushed"
        );
    }

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

    fn log_access(&self, batch: &[UsageRecord]) {
        if self.access_log {
            for r in batch {
                access_log(r);
            }
        }
    }

    /// Writes the batch to the store within `limit`, else to the spool.
    async fn flush(&mut self, batch: &mut Vec<UsageRecord>, limit: Duration) {
        if batch.is_empty() {
            return;
        }
        self.log_access(batch);
        if self.store_up() {
            match tokio::time::timeout(limit, self.store.write_usage(batch)).await {
                Ok(Ok(_)) => {
                    self.store_ok();
                    self.written(batch);
                    batch.clear();
                    self.settled();
                    return;
                }
                Ok(Err(e)) => self.store_failed(&e.to_string()),
                Err(_) => self.store_failed("write timed out"),
            }
        }
        self.to_spool(batch);
        batch.clear();
        self.settled();
    }

    /// Everything taken from the queue is in the store or the spool.
    fn settled(&mut self) {
        if let Err(e) = self.journal.clear() {
            tracing::error!(error = %e, "usage: cannot empty the journal");
        }
    }

    fn to_spool(&self, batch: &[UsageRecord]) {
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
    async fn replay(&mut self) {
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
