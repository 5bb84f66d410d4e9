//! The usage writer: drains the queue in batches, writes them to the store,
//! spools what the store cannot take, replays the spool when it can, and on
//! stop drains everything (to the store, else the spool) before returning.
//!
//! Draining never waits for a write: while a batch is being written, the
//! next one is taken from the queue (and journaled) on the same tick, so
//! what a crash can lose stays one tick of traffic however slow the store.

use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};

use super::journal::{Journal, Sealed};
use super::outlet::{Outlet, WRITE_TIMEOUT};
use super::record::UsageRecord;
use crate::gateway::Stop;

const FINAL_WRITE_TIMEOUT: Duration = Duration::from_secs(3);
/// How often the writer takes the queue into the journal (at most
/// `usage.flush_interval`): what `kill -9` can lose is at most this much
/// traffic, still in the queue.
pub const DRAIN_TICK: Duration = Duration::from_millis(5);

pub struct UsageWriter {
    pub(super) intake: Intake,
    pub(super) outlet: Outlet,
    pub(super) flush_interval: Duration,
}

/// The queue's side: what has been taken from it, and its journal.
pub struct Intake {
    pub(super) rx: mpsc::Receiver<UsageRecord>,
    pub(super) journal: Journal,
    pub(super) batch: Vec<UsageRecord>,
    pub(super) batch_size: usize,
}

impl Intake {
    /// Takes what is queued, up to a full batch, into the batch and the
    /// journal; returns whether the batch is full.
    fn drain(&mut self) -> bool {
        let start = self.batch.len();
        while self.batch.len() < self.batch_size {
            match self.rx.try_recv() {
                Ok(r) => self.batch.push(r),
                Err(_) => break,
            }
        }
        if let Err(e) = self.journal.append(&self.batch[start..]) {
            // The records are still in memory and will be written; only a
            // crash before then would lose them.
            tracing::error!(error = %e, "usage: cannot write the journal");
        }
        self.batch.len() >= self.batch_size
    }

    /// The batch to write, and its journal file.
    fn cut(&mut self) -> (Vec<UsageRecord>, Sealed) {
        let batch = std::mem::replace(&mut self.batch, Vec::with_capacity(self.batch_size));
        (batch, self.journal.cut())
    }
}

impl UsageWriter {
    /// Drains the queue on a short tick rather than waiting in `recv`: a
    /// receiver waiting in `recv` is woken by every record (a futex wake and a
    /// context switch per request), one polled on a timer by none.
    pub async fn run(self, mut stop: watch::Receiver<Option<Stop>>) {
        let UsageWriter {
            mut intake,
            mut outlet,
            flush_interval,
        } = self;
        let tick = flush_interval.min(DRAIN_TICK);
        // What a previous run left (its spool, a crashed process's journal) first.
        outlet.replay().await;
        let mut last_flush = Instant::now();
        let how = loop {
            tokio::select! {
                _ = tokio::time::sleep(tick) => {}
                changed = stop.changed() => {
                    let how: Option<Stop> = *stop.borrow();
                    match (changed, how) {
                        (_, Some(how)) => break how,
                        (Err(_), None) => break Stop::Fast,
                        (Ok(()), None) => continue,
                    }
                }
            }
            let full = intake.drain();
            outlet.metrics.usage_queue_depth.set(intake.rx.len() as i64);
            if !full && last_flush.elapsed() < flush_interval {
                continue;
            }
            last_flush = Instant::now();
            let (batch, sealed) = intake.cut();
            // Written (and the spool replayed) while the queue keeps being
            // drained; a stop waits for the write, bounded by its timeout.
            let write = async {
                outlet.flush(&batch, WRITE_TIMEOUT).await;
                sealed.settled();
                outlet.replay().await;
            };
            tokio::pin!(write);
            loop {
                tokio::select! {
                    _ = &mut write => break,
                    _ = tokio::time::sleep(tick) => { intake.drain(); }
                }
            }
        };
        finish(intake, outlet, how).await;
    }
}

/// Everything still queued goes to the store (graceful) or the spool (fast).
async fn finish(mut intake: Intake, mut outlet: Outlet, how: Stop) {
    intake.rx.close();
    while let Some(r) = intake.rx.recv().await {
        intake.batch.push(r);
    }
    let batch = std::mem::take(&mut intake.batch);
    let n = batch.len();
    match how {
        Stop::Graceful => outlet.flush(&batch, FINAL_WRITE_TIMEOUT).await,
        Stop::Fast => {
            outlet.log_access(&batch);
            outlet.to_spool(&batch);
        }
    }
    // Every record is settled: a clean exit leaves no journal behind.
    intake.journal.remove();
    if let Err(e) = outlet.spool.seal() {
        tracing::error!(error = %e, "usage: cannot seal the spool");
    }
    outlet.metrics.usage_queue_depth.set(0);
    tracing::info!(
        records = n,
        spool_bytes = outlet.spool.used_bytes(),
        "usage: flushed"
    );
}
