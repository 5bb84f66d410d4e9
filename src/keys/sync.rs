//! Keeps the in-memory key table in step with the store.
//!
//! One full load at start (the gateway is not ready before it), then
//! incremental: every change gets a change number; the sync asks for changes
//! after the last number it applied. It asks when the store notifies it
//! (Postgres LISTEN/NOTIFY) and every `keys.sync_interval` regardless, so a lost
//! notification costs at most one interval. When the store is unreachable the
//! table keeps serving what it has and the sync retries.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::{Notify, watch};

use super::KeyTable;
use super::intern::{EntryContext, Interner};
use crate::auth::hash::{KeyHash, PrefixBuildHasher};
use crate::clock::Clock;
use crate::store::{KeyFeed, StoreError};

pub struct KeySync {
    store: Arc<dyn KeyFeed>,
    table: Arc<KeyTable>,
    interner: Interner,
    clock: Clock,
    interval: Duration,
    reachable: Arc<AtomicBool>,
    /// The last change number applied; `None` until the first full load.
    seq: Option<i64>,
}

impl KeySync {
    pub fn new(
        store: Arc<dyn KeyFeed>,
        table: Arc<KeyTable>,
        ctx: EntryContext,
        clock: Clock,
        interval: Duration,
        reachable: Arc<AtomicBool>,
    ) -> KeySync {
        KeySync {
            store,
            table,
            interner: Interner::new(ctx),
            clock,
            interval,
            reachable,
            seq: None,
        }
    }

    /// Loads every key, replacing the table's contents.
    pub async fn load(&mut self) -> Result<usize, StoreError> {
        // A reload must also drop keys deleted while we were not looking; the
        // first load starts from an empty table and needs no such set.
        let mut fresh: Option<HashSet<KeyHash, PrefixBuildHasher>> =
            (!self.table.is_empty()).then(|| {
                HashSet::with_capacity_and_hasher(self.table.len(), PrefixBuildHasher::default())
            });
        let mut loaded = 0;
        let (table, interner) = (&self.table, &mut self.interner);
        let seq = self
            .store
            .snapshot(&mut |row| {
                let hash = row.hash;
                table.insert(hash, Arc::new(interner.entry(row)));
                if let Some(f) = fresh.as_mut() {
                    f.insert(hash);
                }
                loaded += 1;
            })
            .await?;
        if let Some(fresh) = fresh {
            self.table.retain(|h| fresh.contains(h));
        }
        self.interner.prune();
        self.seq = Some(seq);
        self.synced();
        Ok(loaded)
    }

    /// Applies the changes after the last change number.
    pub async fn poll(&mut self) -> Result<(), StoreError> {
        let Some(seq) = self.seq else {
            return self.load().await.map(|_| ());
        };
        let changes = self.store.changes_since(seq).await?;
        if changes.reload {
            return self.load().await.map(|_| ());
        }
        let changed = !changes.upserts.is_empty() || !changes.deletes.is_empty();
        for row in changes.upserts {
            let hash = row.hash;
            self.table.insert(hash, Arc::new(self.interner.entry(row)));
        }
        for hash in &changes.deletes {
            self.table.remove(hash);
        }
        if changed {
            self.interner.prune();
        }
        self.seq = Some(changes.seq);
        self.synced();
        Ok(())
    }

    fn synced(&self) {
        self.table.mark_synced(self.clock.now_ms());
        if !self.reachable.swap(true, Ordering::Relaxed) {
            tracing::info!(
                keys = self.table.len(),
                policies = self.interner.policies(),
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
async fn listen(store: Arc<dyn KeyFeed>, wake: Arc<Notify>, mut stop: watch::Receiver<bool>) {
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
