//! Builds [`KeyEntry`]s from stored rows, sharing identical policies and
//! owners between keys. Used only by the sync task (one writer).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use arc_swap::ArcSwap;
use http::{HeaderName, HeaderValue};
use ipnetwork::IpNetwork;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::entry::{
    Deprecation, KeyEntry, KeyPolicy, Owner, OwnerState, RouteCaps, RouteSet, header_value,
};
use super::model::KeyRow;
use crate::config::Config;
use crate::owners::OwnerRow;
use crate::ratelimit::window::Limits;
use crate::routes::RouteIds;

/// What makes two keys' policies the same.
#[derive(PartialEq, Eq, Hash)]
struct PolicyKey {
    scopes: Vec<String>,
    cidrs: Vec<IpNetwork>,
    routes: Vec<String>,
    limits: Limits,
    route_limits: BTreeMap<String, Limits>,
    /// Forwarded metadata only: other fields do not reach the request path.
    metadata: Vec<(String, String)>,
}

/// An owner known to the table: its shared part, and whether the store has
/// a record of it (an owner without one, e.g. its record not loaded yet, is
/// enabled and shares nothing).
struct OwnerSlot {
    owner: Arc<Owner>,
    recorded: bool,
}

/// What an entry needs from the gateway: route ids (stable across reloads)
/// and the metadata fields forwarded upstream.
#[derive(Debug, Clone, Default)]
pub struct EntryContext {
    pub route_ids: Arc<RouteIds>,
    pub forward_metadata: Vec<String>,
}

impl EntryContext {
    pub fn new(config: &Config, route_ids: Arc<RouteIds>) -> EntryContext {
        EntryContext {
            route_ids,
            forward_metadata: config.gateway.forward_metadata.clone(),
        }
    }
}

#[derive(Default)]
pub struct Interner {
    ctx: EntryContext,
    policies: HashMap<PolicyKey, Arc<KeyPolicy>>,
    owners: HashMap<Box<str>, OwnerSlot>,
    /// The state of every owner that shares and forwards nothing: one copy.
    plain: Arc<OwnerState>,
}

impl Interner {
    pub fn new(ctx: EntryContext) -> Interner {
        Interner {
            ctx,
            ..Interner::default()
        }
    }

    fn plain(&mut self) -> Arc<OwnerState> {
        if !self.plain.enabled {
            self.plain = Arc::new(OwnerState::unrecorded());
        }
        self.plain.clone()
    }

    pub fn entry(&mut self, row: KeyRow) -> KeyEntry {
        let deprecation = match (row.rotated_at, row.spec.expires_at) {
            (Some(since), Some(sunset)) if row.rotated_to.is_some() => {
                Some(Box::new(Deprecation { since, sunset }))
            }
            _ => None,
        };
        KeyEntry {
            id: row.id,
            limit_id: row.lineage_id,
            enabled: row.spec.enabled,
            revoked: row.revoked,
            expires_at: row.spec.expires_at,
            deprecation,
            owner: self.owner(&row.spec.owner_id),
            credits: row.credits.map(Box::new),
            hours: row.spec.allowed_hours.as_ref().map(|h| h.compile()),
            policy: self.policy(row),
        }
    }

    fn owner(&mut self, id: &str) -> Arc<Owner> {
        if let Some(o) = self.owners.get(id) {
            return o.owner.clone();
        }
        let digest = Sha256::digest(format!("keygate-owner:{id}").as_bytes());
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&digest[..16]);
        let o = Arc::new(Owner {
            id: id.into(),
            header: header_value(id),
            tag: crate::ratelimit::redis::owner_tag(id).into(),
            limit_id: Uuid::from_bytes(bytes),
            state: ArcSwap::new(self.plain()),
        });
        let slot = OwnerSlot {
            owner: o.clone(),
            recorded: false,
        };
        self.owners.insert(id.into(), slot);
        o
    }

    /// Loads an owner's record: every key of the owner sees it at once.
    pub fn owner_row(&mut self, row: OwnerRow) {
        let owner = self.owner(&row.id);
        let spec = row.spec;
        let state = OwnerState {
            enabled: spec.enabled,
            limits: spec.rate_limits,
            route_caps: self.route_caps(&spec.route_limits),
            credits: row.credits,
            metadata_headers: self.metadata_headers(&spec.metadata),
        };
        let plain = state.enabled
            && !state.metered()
            && state.route_caps.is_empty()
            && state.metadata_headers.is_empty();
        owner
            .state
            .store(if plain { self.plain() } else { Arc::new(state) });
        if let Some(slot) = self.owners.get_mut(&*row.id) {
            slot.recorded = true;
        }
    }

    /// An owner's record is gone: its keys (if any) share nothing any more.
    pub fn owner_deleted(&mut self, id: &str) {
        let plain = self.plain();
        if let Some(slot) = self.owners.get_mut(id) {
            slot.owner.state.store(plain);
            slot.recorded = false;
        }
    }

    /// After a full reload: owners whose record was not in it are gone.
    pub fn owners_loaded(&mut self, seen: &HashSet<String>) {
        let gone: Vec<Box<str>> = self
            .owners
            .iter()
            .filter(|(id, slot)| slot.recorded && !seen.contains(&***id))
            .map(|(id, _)| id.clone())
            .collect();
        for id in gone {
            self.owner_deleted(&id);
        }
    }

    fn route_caps(&self, limits: &BTreeMap<String, Limits>) -> RouteCaps {
        // A name the configuration does not have (yet) gets an id too: it
        // caps nothing until a route of that name exists.
        RouteCaps::new(
            limits
                .iter()
                .map(|(n, l)| (self.ctx.route_ids.id(n), *l))
                .collect(),
        )
    }

    /// `x-keygate-meta-<field>` for the forwarded fields `metadata` has.
    fn metadata_headers(
        &self,
        metadata: &BTreeMap<String, String>,
    ) -> Box<[(HeaderName, HeaderValue)]> {
        self.ctx
            .forward_metadata
            .iter()
            .filter_map(|f| {
                let v = metadata.get(f)?;
                let name = HeaderName::from_bytes(format!("x-keygate-meta-{f}").as_bytes()).ok()?;
                Some((name, header_value(v)))
            })
            .collect()
    }

    fn policy(&mut self, row: KeyRow) -> Arc<KeyPolicy> {
        let metadata = self
            .ctx
            .forward_metadata
            .iter()
            .filter_map(|f| row.spec.metadata.get(f).map(|v| (f.clone(), v.clone())))
            .collect();
        let spec = row.spec;
        let key = PolicyKey {
            scopes: spec.scopes,
            cidrs: spec.allowed_cidrs,
            routes: spec.allowed_routes,
            limits: spec.rate_limits,
            route_limits: spec.route_limits,
            metadata,
        };
        if let Some(p) = self.policies.get(&key) {
            return p.clone();
        }
        let allowed_routes = if key.routes.is_empty() {
            RouteSet::all()
        } else {
            // A name the configuration does not have (yet) gets an id too: it
            // grants nothing until a route of that name exists.
            RouteSet::of(key.routes.iter().map(|n| self.ctx.route_ids.id(n)))
        };
        let policy = Arc::new(KeyPolicy {
            scopes: key.scopes.iter().map(|s| s.as_str().into()).collect(),
            allowed_cidrs: key.cidrs.clone().into(),
            allowed_routes,
            limits: key.limits,
            route_caps: self.route_caps(&key.route_limits),
            scopes_header: header_value(&key.scopes.join(" ")),
            metadata_headers: key
                .metadata
                .iter()
                .filter_map(|(f, v)| {
                    let name =
                        HeaderName::from_bytes(format!("x-keygate-meta-{f}").as_bytes()).ok()?;
                    Some((name, header_value(v)))
                })
                .collect(),
        });
        self.policies.insert(key, policy.clone());
        policy
    }

    /// Forgets policies and owners no key uses any more.
    pub fn prune(&mut self) {
        self.policies.retain(|_, p| Arc::strong_count(p) > 1);
        self.owners
            .retain(|_, o| o.recorded || Arc::strong_count(&o.owner) > 1);
    }

    pub fn policies(&self) -> usize {
        self.policies.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::hash::KeyHash;
    use crate::keys::model::KeySpec;
    use uuid::Uuid;

    fn row(owner: &str, scopes: &[&str], plan: &str, note: &str) -> KeyRow {
        KeyRow {
            id: Uuid::new_v4(),
            hash: KeyHash([1; 32]),
            lineage_id: Uuid::new_v4(),
            revoked: false,
            rotated_to: None,
            rotated_at: None,
            spec: KeySpec {
                owner_id: owner.into(),
                scopes: scopes.iter().map(|s| s.to_string()).collect(),
                rate_limits: Limits {
                    minute: Some(60),
                    ..Limits::default()
                },
                metadata: [
                    ("plan".to_string(), plan.to_string()),
                    ("note".to_string(), note.to_string()),
                ]
                .into(),
                ..KeySpec::default()
            },
            credits: None,
        }
    }

    fn interner() -> Interner {
        Interner::new(EntryContext {
            forward_metadata: vec!["plan".into()],
            ..EntryContext::default()
        })
    }

    #[test]
    fn identical_policies_and_owners_are_shared() {
        let mut i = interner();
        let a = i.entry(row("acme", &["a:read"], "gold", "x"));
        // Differs only in metadata that is not forwarded: same policy.
        let b = i.entry(row("acme", &["a:read"], "gold", "y"));
        let c = i.entry(row("other", &["a:read"], "silver", "x"));
        assert!(Arc::ptr_eq(&a.policy, &b.policy));
        assert!(Arc::ptr_eq(&a.owner, &b.owner));
        assert!(!Arc::ptr_eq(&a.policy, &c.policy));
        assert_eq!(i.policies(), 2);
        assert_eq!(a.policy.scopes_header, "a:read");
        assert_eq!(
            &*a.policy.metadata_headers,
            &[(
                HeaderName::from_static("x-keygate-meta-plan"),
                http::HeaderValue::from_static("gold")
            )]
        );
        assert_eq!(c.key_id_header(), c.id.hyphenated().to_string().as_str());
    }

    #[test]
    fn an_owner_change_reaches_every_key_of_the_owner() {
        let mut i = interner();
        let a = i.entry(row("acme", &["a:read"], "gold", ""));
        let b = i.entry(row("acme", &["b:read"], "gold", ""));
        assert!(a.owner.state.load().enabled);
        let mut spec = crate::owners::OwnerSpec {
            enabled: false,
            ..Default::default()
        };
        spec.metadata.insert("plan".into(), "silver".into());
        i.owner_row(OwnerRow {
            id: "acme".into(),
            spec,
            credits: None,
        });
        assert!(!b.owner.state.load().enabled);
        assert_eq!(a.owner.state.load().metadata_headers.len(), 1);
        i.owner_deleted("acme");
        assert!(a.owner.state.load().enabled);
        drop((a, b));
        i.prune();
        assert!(i.owners.is_empty());
    }

    #[test]
    fn prune_forgets_unused_policies() {
        let mut i = interner();
        let a = i.entry(row("acme", &["a:read"], "gold", ""));
        let b = i.entry(row("acme", &["b:read"], "gold", ""));
        drop(b);
        i.prune();
        assert_eq!(i.policies(), 1);
        drop(a);
        i.prune();
        assert_eq!(i.policies(), 0);
        assert!(i.owners.is_empty());
    }
}
