//! Keeps the in-memory key table in step with the store.
//!
//! One full load at start (the gateway is not ready before it), then
//! incremental: every change gets a change number; the sync asks for changes
//! after the last number it applied. It asks when the store notifies it
//! (Postgres LISTEN/NOTIFY) and every `keys.sync_interval` regardless, so a lost
//! notification costs at most one interval. When the store is unreachable the
//! table keeps serving what it has and the sync retries.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::{Notify, watch};
use uuid::Uuid;

use super::{EntryContext, KeyEntry, KeyTable};
use crate::auth::hash::KeyHash;
use crate::clock::Clock;
use crate::store::{Changes, DynStore, StoreError};

pub struct KeySync {
    store: DynStore,
    table: Arc<KeyTable>,
    ctx: EntryContext,
    clock: Clock,
    interval: Duration,
    reachable: Arc<AtomicBool>,
    /// The last change number applied; `None` until the first full load.
    seq: Option<i64>,
    by_id: HashMap<Uuid, KeyHash>,
}

impl KeySync {
    pub fn new(
        store: DynStore,
        table: Arc<KeyTable>,
        ctx: EntryContext,
        clock: Clock,
        interval: Duration,
        reachable: Arc<AtomicBool>,
    ) -> KeySync {
        KeySync {
            store,
            table,
            ctx,
            clock,
            interval,
            reachable,
            seq: None,
            by_id: HashMap::new(),
        }
    }

    /// Loads every key, replacing the table's contents.
    pub async fn load(&mut self) -> Result<usize, StoreError> {
        let mut fresh: HashMap<Uuid, KeyHash> = HashMap::with_capacity(self.by_id.len());
        let (table, ctx) = (&self.table, &self.ctx);
        let seq = self
            .store
            .snapshot(self.clock.now(), &mut |k| {
                table.insert(k.hash, Arc::new(KeyEntry::build(&k.record, ctx)));
                fresh.insert(k.record.id, k.hash);
            })
            .await?;
        for (id, hash) in &self.by_id {
            if fresh.get(id) != Some(hash) {
                self.table.remove(hash);
            }
        }
        self.by_id = fresh;
        self.seq = Some(seq);
        self.synced();
        Ok(self.by_id.len())
    }

    /// Applies the changes after the last change number.
    pub async fn poll(&mut self) -> Result<(), StoreError> {
        let Some(seq) = self.seq else {
            return self.load().await.map(|_| ());
        };
        let changes = self.store.changes_since(seq, self.clock.now()).await?;
        self.apply(changes);
        self.synced();
        Ok(())
    }

    fn apply(&mut self, c: Changes) {
        for k in c.upserts {
            if let Some(old) = self.by_id.insert(k.record.id, k.hash) {
                if old != k.hash {
                    self.table.remove(&old);
                }
            }
            self.table
                .insert(k.hash, Arc::new(KeyEntry::build(&k.record, &self.ctx)));
        }
        for id in c.deletes {
            if let Some(hash) = self.by_id.remove(&id) {
                self.table.remove(&hash);
            }
        }
        self.seq = Some(c.seq);
    }

    fn synced(&self) {
        self.table.mark_synced(self.clock.now_ms());
        if !self.reachable.swap(true, Ordering::Relaxed) {
            tracing::info!(
                keys = self.table.len(),
                "key store reachable; key table in sync"
            );
        }
    }

    fn failed(&self, e: &StoreError) {
        if self.reachable.swap(false, Ordering::Relaxed) || self.seq.is_none() {
            tracing::warn!(error = %e, keys = self.table.len(), "key sync failed; serving from the in-memory table and retrying");
        }
    }

    /// Runs until `stop` turns true.
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let wake = Arc::new(Notify::new());
        let listener = tokio::spawn(listen(self.store.clone(), wake.clone(), stop.clone()));
        loop {
            let result = self.poll().await;
            if let Err(e) = &result {
                self.failed(e);
            }
            // Retry quickly while the store is unreachable or the table not yet loaded.
            let wait = if result.is_ok() {
                self.interval
            } else {
                self.interval.min(Duration::from_secs(1))
            };
            tokio::select! {
                _ = wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
                _ = stop.wait_for(|s| *s) => break,
            }
        }
        listener.abort();
    }
}

/// Forwards store notifications to `wake`; reconnects with backoff.
async fn listen(store: DynStore, wake: Arc<Notify>, mut stop: watch::Receiver<bool>) {
    let mut backoff = Duration::from_millis(200);
    loop {
        let attempt = async {
            let Some(mut l) = store.listen().await? else {
                // No push channel: polling alone keeps the table in step.
                std::future::pending::<()>().await;
                return Ok(());
            };
            // Changes made while we were not listening: look now.
            wake.notify_one();
            loop {
                let delivered = l.next().await?;
                wake.notify_one();
                if !delivered {
                    tracing::debug!("key change listener reconnected");
                }
            }
        };
        let result: Result<(), StoreError> = tokio::select! {
            r = attempt => r,
            _ = stop.wait_for(|s| *s) => return,
        };
        if let Err(e) = result {
            tracing::debug!(error = %e, "key change listener failed; retrying");
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}
