//! The in-memory key table: `KeyHash -> KeyEntry`, read lock-free by every
//! request and written only by the sync task.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use crate::auth::hash::{KeyHash, PrefixBuildHasher};

use super::entry::KeyEntry;

pub struct KeyTable {
    map: papaya::HashMap<KeyHash, Arc<KeyEntry>, PrefixBuildHasher>,
    ready: AtomicBool,
    /// Unix milliseconds of the last successful sync with the store.
    synced_at_ms: AtomicI64,
}

impl Default for KeyTable {
    fn default() -> Self {
        KeyTable {
            map: papaya::HashMap::builder()
                .hasher(PrefixBuildHasher::default())
                .build(),
            ready: AtomicBool::new(false),
            synced_at_ms: AtomicI64::new(0),
        }
    }
}

impl KeyTable {
    pub fn get(&self, hash: &KeyHash) -> Option<Arc<KeyEntry>> {
        self.map.pin().get(hash).cloned()
    }

    pub fn insert(&self, hash: KeyHash, entry: Arc<KeyEntry>) {
        self.map.pin().insert(hash, entry);
    }

    pub fn remove(&self, hash: &KeyHash) {
        self.map.pin().remove(hash);
    }

    /// Keeps only the entries whose hash `keep` accepts.
    pub fn retain(&self, mut keep: impl FnMut(&KeyHash) -> bool) {
        self.map.pin().retain(|h, _| keep(h));
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the table has been loaded from the store at least once.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    pub fn mark_synced(&self, now_ms: i64) {
        self.synced_at_ms.store(now_ms, Ordering::Release);
        self.ready.store(true, Ordering::Release);
    }

    /// Seconds since the last sync; `None` before the first.
    pub fn sync_age_secs(&self, now_ms: i64) -> Option<f64> {
        self.is_ready()
            .then(|| (now_ms - self.synced_at_ms.load(Ordering::Acquire)).max(0) as f64 / 1000.0)
    }
}
