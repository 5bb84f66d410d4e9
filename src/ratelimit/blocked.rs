//! The local over-limit cache: a key that a backend said is exhausted until T
//! is refused locally until T, so an abusive client costs the backend nothing.
//! T is the exact time the next request could be admitted with no other
//! traffic, so a local refusal is never one the backend would have admitted.

use uuid::Uuid;

use super::decision::Scope;
use super::window::Window;
use crate::routes::RouteId;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Block {
    pub until_ms: u64,
    pub window: Window,
}

#[derive(Default)]
pub struct BlockCache {
    map: papaya::HashMap<(Uuid, Scope), Block>,
}

impl BlockCache {
    /// A block that applies to this key on this route, if any is still running.
    pub fn get(&self, id: Uuid, route: RouteId, now_ms: u64) -> Option<Block> {
        let map = self.map.pin();
        [Scope::Key, Scope::Route(route)]
            .into_iter()
            .filter_map(|scope| map.get(&(id, scope)).copied())
            .filter(|b| b.until_ms > now_ms)
            .max_by_key(|b| b.until_ms)
    }

    /// A running block of an owner's shared windows.
    pub fn get_owner(&self, owner: Uuid, now_ms: u64) -> Option<Block> {
        let map = self.map.pin();
        map.get(&(owner, Scope::Owner))
            .copied()
            .filter(|b| b.until_ms > now_ms)
    }

    pub fn insert(&self, id: Uuid, scope: Scope, block: Block) {
        self.map.pin().insert((id, scope), block);
    }

    /// Drops expired blocks.
    pub fn sweep(&self, now_ms: u64) {
        self.map.pin().retain(|_, b| b.until_ms > now_ms);
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_apply_by_scope_until_they_end() {
        let c = BlockCache::default();
        let id = Uuid::from_u128(9);
        c.insert(
            id,
            Scope::Route(RouteId(2)),
            Block {
                until_ms: 1_000,
                window: Window::Second,
            },
        );
        assert!(c.get(id, RouteId(2), 500).is_some());
        assert!(
            c.get(id, RouteId(3), 500).is_none(),
            "another route is not blocked"
        );
        assert!(c.get(id, RouteId(2), 1_000).is_none(), "over at until");
        c.insert(
            id,
            Scope::Key,
            Block {
                until_ms: 5_000,
                window: Window::Minute,
            },
        );
        assert_eq!(
            c.get(id, RouteId(3), 500).map(|b| b.window),
            Some(Window::Minute)
        );
        c.sweep(2_000);
        assert_eq!(c.len(), 1);
    }
}
