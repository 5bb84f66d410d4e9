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
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::time::Duration;

use tokio::sync::{Notify, watch};

use super::KeyTable;
use super::intern::{EntryContext, Interner};
use crate::auth::hash::{KeyHash, PrefixBuildHasher};
use crate::clock::Clock;
use crate::store::{FeedRow, KeyFeed, StoreError};

/// How the sync stands, for `/readyz`.
#[derive(Debug, Default)]
pub struct SyncStatus {
    reachable: AtomicBool,
    push: AtomicU8,
}

/// How changes reach the table besides polling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Push {
    /// Not known yet (connecting).
    Unknown = 0,
    /// LISTEN works (a probe notification came back).
    Listening = 1,
    /// No push channel (SQLite, or a transaction pooler without listen_url):
    /// changes arrive by polling.
    Polling = 2,
    /// LISTEN was accepted but hears nothing: polling, and reported.
    Deaf = 3,
}

impl SyncStatus {
    pub fn reachable(&self) -> bool {
        self.reachable.load(Ordering::Relaxed)
    }

    pub fn push(&self) -> Push {
        match self.push.load(Ordering::Relaxed) {
            1 => Push::Listening,
            2 => Push::Polling,
            3 => Push::Deaf,
            _ => Push::Unknown,
        }
    }

    fn set_push(&self, p: Push) {
        self.push.store(p as u8, Ordering::Relaxed);
    }
}

impl Push {
    pub fn as_str(self) -> &'static str {
        match self {
            Push::Unknown => "unknown",
            Push::Listening => "listening",
            Push::Polling => "polling",
            Push::Deaf => "deaf",
        }
    }
}

pub struct KeySync {
    store: Arc<dyn KeyFeed>,
    table: Arc<KeyTable>,
    interner: Interner,
    clock: Clock,
    interval: Duration,
    status: Arc<SyncStatus>,
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
        status: Arc<SyncStatus>,
    ) -> KeySync {
        KeySync {
            store,
            table,
            interner: Interner::new(ctx),
            clock,
            interval,
            status,
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
        let mut owners = HashSet::new();
        let (table, interner) = (&self.table, &mut self.interner);
        let seq = self
            .store
            .snapshot(&mut |row| match row {
                FeedRow::Owner(o) => {
                    owners.insert(o.id.clone());
                    interner.owner_row(*o);
                }
                FeedRow::Key(row) => {
                    let hash = row.hash;
                    table.insert(hash, Arc::new(interner.entry(*row)));
                    if let Some(f) = fresh.as_mut() {
                        f.insert(hash);
                    }
                    loaded += 1;
                }
            })
            .await?;
        if let Some(fresh) = fresh {
            self.table.retain(|h| fresh.contains(h));
        }
        self.interner.owners_loaded(&owners);
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
        let changed = !changes.upserts.is_empty()
            || !changes.deletes.is_empty()
            || !changes.owner_deletes.is_empty();
        // Owners first: a key that moved arrives with its owner's record.
        for row in changes.owners {
            self.interner.owner_row(row);
        }
        for id in &changes.owner_deletes {
            self.interner.owner_deleted(id);
        }
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
        if !self.status.reachable.swap(true, Ordering::Relaxed) {
            tracing::info!(
                keys = self.table.len(),
                policies = self.interner.policies(),
                "key store reachable; key table in sync"
            );
        }
    }

    fn failed(&self, e: &StoreError) {
        if self.status.reachable.swap(false, Ordering::Relaxed) || self.seq.is_none() {
            tracing::warn!(error = %e, keys = self.table.len(), "key sync failed; serving from the in-memory table and retrying");
        }
    }

    /// Runs until `stop` turns true.
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let wake = Arc::new(Notify::new());
        let push = Pusher {
            store: self.store.clone(),
            wake: wake.clone(),
            status: self.status.clone(),
            interval: self.interval,
        };
        let listener = tokio::spawn(push.run(stop.clone()));
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

/// Forwards store notifications to the sync; reconnects with backoff.
struct Pusher {
    store: Arc<dyn KeyFeed>,
    wake: Arc<Notify>,
    status: Arc<SyncStatus>,
    /// The poll interval, for the log.
    interval: Duration,
}

impl Pusher {
    async fn run(self, mut stop: watch::Receiver<bool>) {
        let mut backoff = Duration::from_millis(200);
        loop {
            let result: Result<(), StoreError> = tokio::select! {
                r = self.listen() => r,
                _ = stop.wait_for(|s| *s) => return,
            };
            match result {
                // A deaf listener stays deaf: poll, and say so once.
                Err(e @ StoreError::DeafListener) => {
                    self.status.set_push(Push::Deaf);
                    tracing::warn!(error = %e, poll = ?self.interval, "key sync: not listening");
                    return;
                }
                Err(e) => tracing::debug!(error = %e, "key change listener failed; retrying"),
                Ok(()) => return,
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }

    /// Listens until the channel fails; `Ok` only when there is none.
    async fn listen(&self) -> Result<(), StoreError> {
        let Some(mut l) = self.store.listen().await? else {
            self.status.set_push(Push::Polling);
            tracing::info!(poll = ?self.interval, "key sync: no push channel; key changes arrive by polling");
            return Ok(());
        };
        self.status.set_push(Push::Listening);
        // Changes made while we were not listening: look now.
        self.wake.notify_one();
        loop {
            let delivered = l.next().await?;
            self.wake.notify_one();
            if !delivered {
                tracing::debug!("key change listener reconnected");
            }
        }
    }
}
