//! Route identity that survives reloads. A route is known by its name; each
//! name gets a small id the first time it is seen (in the configuration or in
//! a key's `allowed_routes`) and keeps it for the life of the process, so that
//! a key's allowed-route set, rate-limit blocks and local counters stay valid
//! when a reload adds, removes or reorders routes.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use arc_swap::ArcSwap;
use parking_lot::RwLock;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RouteId(pub u32);

impl RouteId {
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// Name → id, append-only. Read by every reload and key load; never by requests.
#[derive(Debug, Default)]
pub struct RouteIds {
    map: RwLock<HashMap<Box<str>, RouteId>>,
}

impl RouteIds {
    /// The name's id, assigning the next one on first sight.
    pub fn id(&self, name: &str) -> RouteId {
        if let Some(id) = self.map.read().get(name) {
            return *id;
        }
        let mut map = self.map.write();
        let next = RouteId(u32::try_from(map.len()).unwrap_or(u32::MAX));
        *map.entry(name.into()).or_insert(next)
    }

    /// How many ids exist (the size a bit set over them needs).
    pub fn len(&self) -> usize {
        self.map.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The route names of the running configuration, for validating a key's
/// `allowed_routes`; replaced on reload.
pub type KnownRoutes = Arc<ArcSwap<HashSet<String>>>;

/// Known routes from a list of names.
pub fn known<'a>(names: impl IntoIterator<Item = &'a str>) -> KnownRoutes {
    Arc::new(ArcSwap::from_pointee(
        names.into_iter().map(str::to_owned).collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_and_dense() {
        let ids = RouteIds::default();
        let a = ids.id("a");
        let b = ids.id("b");
        assert_eq!((a, b), (RouteId(0), RouteId(1)));
        assert_eq!(ids.id("a"), a);
        assert_eq!(ids.len(), 2);
    }
}
