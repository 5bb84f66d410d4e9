//! Builds [`KeyEntry`]s from stored rows, sharing identical policies and
//! owners between keys. Used only by the sync task (one writer).

use std::collections::HashMap;
use std::sync::Arc;

use http::HeaderName;
use ipnetwork::IpNetwork;

use super::entry::{Deprecation, KeyEntry, KeyPolicy, Owner, RouteSet, header_value};
use super::model::KeyRow;
use crate::config::Config;
use crate::ratelimit::window::Limits;
use crate::routes::RouteIds;

/// What makes two keys' policies the same.
#[derive(PartialEq, Eq, Hash)]
struct PolicyKey {
    scopes: Vec<String>,
    cidrs: Vec<IpNetwork>,
    routes: Vec<String>,
    limits: Limits,
    /// Forwarded metadata only: other fields do not reach the request path.
    metadata: Vec<(String, String)>,
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
    owners: HashMap<Box<str>, Arc<Owner>>,
}

impl Interner {
    pub fn new(ctx: EntryContext) -> Interner {
        Interner {
            ctx,
            ..Interner::default()
        }
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
            policy: self.policy(row),
        }
    }

    fn owner(&mut self, id: &str) -> Arc<Owner> {
        if let Some(o) = self.owners.get(id) {
            return o.clone();
        }
        let o = Arc::new(Owner {
            id: id.into(),
            header: header_value(id),
        });
        self.owners.insert(id.into(), o.clone());
        o
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
        self.owners.retain(|_, o| Arc::strong_count(o) > 1);
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
