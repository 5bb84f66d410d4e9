//! A key as the request path sees it: everything needed to decide and to
//! forward, precomputed (route set as a bitset, identity headers as values).

use std::collections::HashMap;
use std::net::IpAddr;

use chrono::{DateTime, Utc};
use http::{HeaderName, HeaderValue};
use ipnetwork::IpNetwork;
use uuid::Uuid;

use crate::ratelimit::window::Limits;
use crate::store::model::KeyRecord;

/// Route indices a key may use; `None` = every route.
#[derive(Debug, Clone, Default)]
pub struct RouteSet(Option<Box<[u64]>>);

impl RouteSet {
    pub fn all() -> RouteSet {
        RouteSet(None)
    }

    pub fn from_indices(indices: impl IntoIterator<Item = usize>, routes: usize) -> RouteSet {
        let mut bits = vec![0u64; routes.div_ceil(64).max(1)];
        for i in indices {
            if let Some(word) = bits.get_mut(i / 64) {
                *word |= 1 << (i % 64);
            }
        }
        RouteSet(Some(bits.into()))
    }

    pub fn contains(&self, route: usize) -> bool {
        match &self.0 {
            None => true,
            Some(bits) => bits
                .get(route / 64)
                .is_some_and(|w| w & (1 << (route % 64)) != 0),
        }
    }
}

/// Header values sent upstream for this key, built once.
#[derive(Debug, Clone)]
pub struct IdentityHeaders {
    pub key_id: HeaderValue,
    pub owner_id: HeaderValue,
    pub scopes: HeaderValue,
    pub metadata: Box<[(HeaderName, HeaderValue)]>,
}

/// Set on the old key of a rotation until its grace period ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deprecation {
    pub since: DateTime<Utc>,
    pub sunset: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct KeyEntry {
    pub id: Uuid,
    pub owner_id: std::sync::Arc<str>,
    /// Rate-limit identity, shared by a key and the keys rotated from it, so a
    /// rotation does not double the quota during its grace period.
    pub limit_id: Uuid,
    /// The Redis key prefix of `limit_id`, built once.
    pub limit_prefix: Box<str>,
    pub scopes: Box<[Box<str>]>,
    pub allowed_cidrs: Box<[IpNetwork]>,
    pub allowed_routes: RouteSet,
    pub limits: Limits,
    pub enabled: bool,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked: bool,
    pub deprecation: Option<Deprecation>,
    pub headers: IdentityHeaders,
}

/// What an entry needs from the gateway's configuration.
#[derive(Debug, Clone, Default)]
pub struct EntryContext {
    pub route_index: HashMap<String, usize>,
    pub route_count: usize,
    pub forward_metadata: Vec<String>,
}

impl EntryContext {
    pub fn new(config: &crate::config::Config) -> EntryContext {
        EntryContext {
            route_index: config
                .routes
                .iter()
                .enumerate()
                .map(|(i, r)| (r.name.clone(), i))
                .collect(),
            route_count: config.routes.len(),
            forward_metadata: config.gateway.forward_metadata.clone(),
        }
    }
}

fn header_value(s: &str) -> HeaderValue {
    // Stored values are validated printable text; anything else is dropped rather
    // than failing the key.
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static(""))
}

impl KeyEntry {
    pub fn build(r: &KeyRecord, ctx: &EntryContext) -> KeyEntry {
        let allowed_routes = if r.allowed_routes.is_empty() {
            RouteSet::all()
        } else {
            // Names this gateway's config does not have grant nothing here.
            RouteSet::from_indices(
                r.allowed_routes
                    .iter()
                    .filter_map(|n| ctx.route_index.get(n).copied()),
                ctx.route_count,
            )
        };
        let metadata = ctx
            .forward_metadata
            .iter()
            .filter_map(|field| {
                let value = r.metadata.get(field)?;
                let name =
                    HeaderName::from_bytes(format!("x-keygate-meta-{field}").as_bytes()).ok()?;
                Some((name, HeaderValue::from_str(value).ok()?))
            })
            .collect();
        KeyEntry {
            id: r.id,
            owner_id: r.owner_id.as_str().into(),
            limit_id: r.lineage_id,
            limit_prefix: crate::ratelimit::redis::key_prefix(r.lineage_id).into(),
            scopes: r.scopes.iter().map(|s| s.as_str().into()).collect(),
            allowed_cidrs: r.allowed_cidrs.clone().into(),
            allowed_routes,
            limits: r.rate_limits,
            enabled: r.enabled,
            expires_at: r.expires_at,
            revoked: r.revoked_at.is_some(),
            deprecation: match (r.rotated_at, r.expires_at) {
                (Some(since), Some(sunset)) if r.rotated_to.is_some() => {
                    Some(Deprecation { since, sunset })
                }
                _ => None,
            },
            headers: IdentityHeaders {
                key_id: header_value(&r.id.hyphenated().to_string()),
                owner_id: header_value(&r.owner_id),
                scopes: header_value(&r.scopes.join(" ")),
                metadata,
            },
        }
    }

    pub fn ip_allowed(&self, ip: IpAddr) -> bool {
        self.allowed_cidrs.is_empty() || self.allowed_cidrs.iter().any(|n| n.contains(ip))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_sets() {
        let all = RouteSet::all();
        assert!(all.contains(0) && all.contains(1000));
        let some = RouteSet::from_indices([1, 70], 100);
        assert!(some.contains(1) && some.contains(70));
        assert!(!some.contains(0) && !some.contains(71) && !some.contains(500));
        let none = RouteSet::from_indices([], 3);
        assert!(!none.contains(0));
    }
}
