//! A key as the request path sees it: everything needed to decide and to
//! forward, precomputed. The parts many keys share (their policy: scopes,
//! CIDRs, routes, limits, forwarded metadata; and their owner) are interned,
//! so a million keys on a few plans cost a million small entries, not a million
//! copies of the same lists and header values (see [`super::intern`]).

use std::net::IpAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use chrono::{DateTime, Utc};
use http::{HeaderName, HeaderValue};
use ipnetwork::IpNetwork;
use uuid::Uuid;

use super::hours::HoursCheck;
use crate::credits::CreditState;
use crate::ratelimit::window::Limits;
use crate::routes::RouteId;

/// Routes a key may use, by [`RouteId`] (stable across reloads); `None` = every route.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct RouteSet(Option<Box<[u64]>>);

impl RouteSet {
    pub fn all() -> RouteSet {
        RouteSet(None)
    }

    pub fn of(ids: impl IntoIterator<Item = RouteId>) -> RouteSet {
        let mut bits: Vec<u64> = Vec::new();
        for id in ids {
            let i = id.index();
            if bits.len() <= i / 64 {
                bits.resize(i / 64 + 1, 0);
            }
            bits[i / 64] |= 1 << (i % 64);
        }
        RouteSet(Some(bits.into()))
    }

    pub fn contains(&self, route: RouteId) -> bool {
        let i = route.index();
        match &self.0 {
            None => true,
            Some(bits) => bits.get(i / 64).is_some_and(|w| w & (1 << (i % 64)) != 0),
        }
    }
}

/// Set on the old key of a rotation until its grace period ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deprecation {
    pub since: DateTime<Utc>,
    pub sunset: DateTime<Utc>,
}

/// What keys on the same plan share.
#[derive(Debug)]
pub struct KeyPolicy {
    pub scopes: Box<[Box<str>]>,
    pub allowed_cidrs: Box<[IpNetwork]>,
    pub allowed_routes: RouteSet,
    pub limits: Limits,
    /// The key's `route_limits`.
    pub route_caps: RouteCaps,
    /// `x-keygate-scopes`
    pub scopes_header: HeaderValue,
    /// `x-keygate-meta-<field>` for each forwarded field the key has.
    pub metadata_headers: Box<[(HeaderName, HeaderValue)]>,
}

/// Per-route caps that replace a route's own (`route_limits` of a key or an
/// owner), by [`RouteId`] (stable across reloads).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct RouteCaps(Box<[(RouteId, Limits)]>);

impl RouteCaps {
    pub fn new(mut caps: Vec<(RouteId, Limits)>) -> RouteCaps {
        caps.sort_by_key(|(r, _)| *r);
        RouteCaps(caps.into())
    }

    pub fn get(&self, route: RouteId) -> Option<&Limits> {
        self.0.iter().find(|(r, _)| *r == route).map(|(_, l)| l)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// What keys of the same owner share: its id, and its record as the table
/// last loaded it. A change swaps [`Owner::state`] in place, so every key of
/// the owner sees it at once without being reloaded.
#[derive(Debug)]
pub struct Owner {
    pub id: Arc<str>,
    /// `x-keygate-owner-id`
    pub header: HeaderValue,
    /// `kg:{o:<id>}:`: the Redis hash tag of everything counted for the owner
    /// (see [`crate::ratelimit::redis::owner_tag`]).
    pub tag: Box<str>,
    /// The owner's identity in local counters: a digest of its id, the same
    /// on every instance.
    pub limit_id: Uuid,
    pub state: ArcSwap<OwnerState>,
}

/// An owner's record, as the request path reads it.
#[derive(Debug, Default)]
pub struct OwnerState {
    pub enabled: bool,
    /// Shared by all the owner's keys.
    pub limits: Limits,
    pub route_caps: RouteCaps,
    pub credits: Option<CreditState>,
    /// `x-keygate-meta-<field>` for each forwarded field the owner has.
    pub metadata_headers: Box<[(HeaderName, HeaderValue)]>,
}

impl OwnerState {
    /// The state of an owner without a record: enabled, nothing shared.
    pub fn unrecorded() -> OwnerState {
        OwnerState {
            enabled: true,
            ..OwnerState::default()
        }
    }

    /// Whether something is counted for the owner itself (shared windows or
    /// credits): then its keys' counters carry the owner's hash tag.
    pub fn metered(&self) -> bool {
        !self.limits.is_empty() || self.credits.is_some()
    }
}

#[derive(Debug, Clone)]
pub struct KeyEntry {
    pub id: Uuid,
    /// Rate-limit identity, shared by a key and the keys rotated from it, so a
    /// rotation does not double the quota during its grace period.
    pub limit_id: Uuid,
    pub enabled: bool,
    pub revoked: bool,
    pub expires_at: Option<DateTime<Utc>>,
    pub deprecation: Option<Box<Deprecation>>,
    pub owner: Arc<Owner>,
    pub policy: Arc<KeyPolicy>,
    /// The key's own credits (its lineage's); most keys have none.
    pub credits: Option<Box<CreditState>>,
    /// When the key may be used; `None`: always.
    pub hours: Option<HoursCheck>,
}

impl KeyEntry {
    pub fn ip_allowed(&self, ip: IpAddr) -> bool {
        let cidrs = &self.policy.allowed_cidrs;
        cidrs.is_empty() || cidrs.iter().any(|n| n.contains(ip))
    }

    pub fn scopes(&self) -> &[Box<str>] {
        &self.policy.scopes
    }

    pub fn limits(&self) -> &Limits {
        &self.policy.limits
    }

    pub fn owner_id(&self) -> &Arc<str> {
        &self.owner.id
    }

    /// `x-keygate-key-id`, formatted per request: unique per key, so storing it
    /// would cost ~90 bytes per key for a ~30 ns saving.
    pub fn key_id_header(&self) -> HeaderValue {
        crate::ids::uuid_header(self.id)
    }
}

/// A header value from stored text; anything unprintable becomes empty rather
/// than failing the key (stored values are validated on the way in).
pub(super) fn header_value(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static(""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_sets() {
        let r = RouteId;
        let all = RouteSet::all();
        assert!(all.contains(r(0)) && all.contains(r(1000)));
        let some = RouteSet::of([r(1), r(70)]);
        assert!(some.contains(r(1)) && some.contains(r(70)));
        assert!(!some.contains(r(0)) && !some.contains(r(71)) && !some.contains(r(500)));
        let none = RouteSet::of([]);
        assert!(!none.contains(r(0)));
    }
}
