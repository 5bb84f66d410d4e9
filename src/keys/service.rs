//! Key management: the one service layer behind the CLI and the admin API.
//! It validates input, makes secrets, and calls the store; every change reaches
//! running gateways through the store's change log.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::validate::{self as v, Errors, FieldError};
use crate::audit::{Actor, AuditDraft};
use crate::auth::hash::KeyHasher;
use crate::auth::key::{self, PlaintextKey};
use crate::clock::Clock;
use crate::ratelimit::window::Limits;
use crate::store::model::{KeyRecord, KeyStatus};
use crate::store::{DynStore, KeyChange, KeyPatch, KeyQuery, NewKey, StoreError};

pub const MAX_PAGE: u32 = 1000;

/// The longest rotation grace period, for the CLI and the admin API alike.
pub const MAX_GRACE: chrono::Duration = chrono::Duration::days(366);
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("invalid input: {}", .0.iter().map(|f| format!("{}: {}", f.field, f.message)).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<FieldError>),
    #[error("key {0} not found")]
    NotFound(Uuid),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(id) => ServiceError::NotFound(id),
            e @ (StoreError::OwnerLimit { .. } | StoreError::Conflict { .. }) => {
                ServiceError::Conflict(e.to_string())
            }
            e @ StoreError::Unavailable(_) => ServiceError::Unavailable(e.to_string()),
            e => ServiceError::Internal(e.to_string()),
        }
    }
}

fn yes() -> bool {
    true
}

/// A key to create.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    #[schema(min_length = 1, max_length = 128)]
    pub owner_id: String,
    #[serde(default)]
    pub name: String,
    /// Key prefix; the configured default when absent.
    #[serde(default)]
    pub prefix: Option<String>,
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default)]
    pub allowed_cidrs: Vec<String>,
    #[serde(default)]
    pub allowed_routes: Vec<String>,
    #[serde(default)]
    pub rate_limits: Limits,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default)]
    pub expires_at: Option<DateTime<Utc>>,
    /// Alternative to `expires_at`: a duration from now, e.g. "30d".
    #[serde(default)]
    pub expires_in: Option<String>,
}

/// A partial update: absent fields are left as they are. Lists and objects
/// (`scopes`, `rate_limits`, `metadata`...) are replaced whole.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateKey {
    pub name: Option<String>,
    pub scopes: Option<Vec<String>>,
    pub allowed_cidrs: Option<Vec<String>>,
    pub allowed_routes: Option<Vec<String>>,
    pub rate_limits: Option<Limits>,
    pub metadata: Option<BTreeMap<String, String>>,
    pub tags: Option<Vec<String>>,
    pub enabled: Option<bool>,
    /// `null` removes the expiry.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<DateTime<Utc>>)]
    pub expires_at: Option<Option<DateTime<Utc>>>,
    pub expires_in: Option<String>,
}

fn double_option<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Option<DateTime<Utc>>>, D::Error> {
    Option::<DateTime<Utc>>::deserialize(d).map(Some)
}

/// A created key and its secret, shown this once.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CreatedKey {
    pub key: KeyRecord,
    #[serde(serialize_with = "expose")]
    #[schema(value_type = String)]
    pub secret: PlaintextKey,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RotatedKey {
    pub key: KeyRecord,
    #[serde(serialize_with = "expose")]
    #[schema(value_type = String)]
    pub secret: PlaintextKey,
    pub previous: KeyRecord,
}

fn expose<S: serde::Serializer>(k: &PlaintextKey, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(k.expose())
}

pub struct KeyService {
    store: DynStore,
    hasher: KeyHasher,
    default_prefix: String,
    max_per_owner: u32,
    routes: HashSet<String>,
    clock: Clock,
}

impl KeyService {
    pub fn new(
        store: DynStore,
        hasher: KeyHasher,
        config: &crate::config::Config,
        clock: Clock,
    ) -> KeyService {
        KeyService {
            store,
            hasher,
            default_prefix: config.keys.default_prefix.clone(),
            max_per_owner: config.keys.max_per_owner,
            routes: config.routes.iter().map(|r| r.name.clone()).collect(),
            clock,
        }
    }

    pub fn store(&self) -> &DynStore {
        &self.store
    }

    fn new_secret(&self, prefix: &str) -> Result<(PlaintextKey, NewKey), ServiceError> {
        let secret = key::generate(prefix).map_err(|e| {
            ServiceError::Invalid(vec![FieldError {
                field: "prefix".into(),
                message: e.to_string(),
            }])
        })?;
        let id = crate::ids::uuid_v7();
        let new = NewKey {
            id,
            hash: self.hasher.hash(secret.expose()),
            prefix: prefix.to_owned(),
            hint: secret.hint(),
            owner_id: String::new(),
            name: String::new(),
            scopes: vec![],
            allowed_cidrs: vec![],
            allowed_routes: vec![],
            rate_limits: Limits::default(),
            metadata: BTreeMap::new(),
            tags: vec![],
            enabled: true,
            expires_at: None,
            created_at: self.clock.now(),
            lineage_id: id,
        };
        Ok((secret, new))
    }

    pub async fn create(&self, req: CreateKey, actor: &Actor) -> Result<CreatedKey, ServiceError> {
        let now = self.clock.now();
        let mut e = Errors::default();
        v::owner_id(&mut e, &req.owner_id);
        v::name(&mut e, &req.name);
        let prefix = req
            .prefix
            .clone()
            .unwrap_or_else(|| self.default_prefix.clone());
        v::prefix(&mut e, &prefix);
        v::scopes(&mut e, &req.scopes);
        let cidrs = v::cidrs(&mut e, &req.allowed_cidrs);
        v::routes(&mut e, &req.allowed_routes, &self.routes);
        v::limits(&mut e, &req.rate_limits);
        v::metadata(&mut e, &req.metadata);
        v::tags(&mut e, &req.tags);
        let expires_at = v::expiry(
            &mut e,
            req.expires_in.as_deref(),
            req.expires_at.map(Some),
            now,
        )
        .flatten();
        e.into_result(()).map_err(ServiceError::Invalid)?;

        let (secret, mut new) = self.new_secret(&prefix)?;
        new.owner_id = req.owner_id;
        new.name = req.name;
        new.scopes = req.scopes;
        new.allowed_cidrs = cidrs;
        new.allowed_routes = req.allowed_routes;
        new.rate_limits = req.rate_limits;
        new.metadata = req.metadata;
        new.tags = req.tags;
        new.enabled = req.enabled;
        new.expires_at = expires_at;
        let audit = draft(actor, "key.create", Some(new.id));
        let key = self
            .store
            .insert_key(&new, Some(self.max_per_owner), audit)
            .await?;
        Ok(CreatedKey { key, secret })
    }

    pub async fn get(&self, id: Uuid) -> Result<KeyRecord, ServiceError> {
        self.store
            .get_key(id, self.clock.now())
            .await?
            .ok_or(ServiceError::NotFound(id))
    }

    /// A page of keys and the cursor for the next one.
    pub async fn list(
        &self,
        mut q: KeyQuery,
    ) -> Result<(Vec<KeyRecord>, Option<Uuid>), ServiceError> {
        q.limit = q.limit.clamp(1, MAX_PAGE);
        let want = q.limit as usize;
        q.limit += 1;
        let mut keys = self.store.list_keys(&q, self.clock.now()).await?;
        let next = if keys.len() > want {
            keys.truncate(want);
            keys.last().map(|k| k.id)
        } else {
            None
        };
        Ok((keys, next))
    }

    pub async fn update(
        &self,
        id: Uuid,
        req: UpdateKey,
        actor: &Actor,
    ) -> Result<KeyRecord, ServiceError> {
        let now = self.clock.now();
        let mut e = Errors::default();
        if let Some(n) = &req.name {
            v::name(&mut e, n);
        }
        if let Some(s) = &req.scopes {
            v::scopes(&mut e, s);
        }
        let cidrs = req.allowed_cidrs.as_ref().map(|c| v::cidrs(&mut e, c));
        if let Some(r) = &req.allowed_routes {
            v::routes(&mut e, r, &self.routes);
        }
        if let Some(l) = &req.rate_limits {
            v::limits(&mut e, l);
        }
        if let Some(m) = &req.metadata {
            v::metadata(&mut e, m);
        }
        if let Some(t) = &req.tags {
            v::tags(&mut e, t);
        }
        let expires_at = v::expiry(&mut e, req.expires_in.as_deref(), req.expires_at, now);
        let patch = KeyPatch {
            name: req.name,
            scopes: req.scopes,
            allowed_cidrs: cidrs,
            allowed_routes: req.allowed_routes,
            rate_limits: req.rate_limits,
            metadata: req.metadata,
            tags: req.tags,
            enabled: req.enabled,
            expires_at,
        };
        if patch.is_empty() {
            e.add("", "nothing to update");
        }
        e.into_result(()).map_err(ServiceError::Invalid)?;
        let audit = draft(actor, "key.update", Some(id));
        Ok(self
            .store
            .change_key(id, &KeyChange::Patch(Box::new(patch)), now, audit)
            .await?)
    }

    pub async fn revoke(
        &self,
        id: Uuid,
        reason: Option<String>,
        actor: &Actor,
    ) -> Result<KeyRecord, ServiceError> {
        if let Some(r) = &reason {
            let mut e = Errors::default();
            v::reason(&mut e, r);
            e.into_result(()).map_err(ServiceError::Invalid)?;
        }
        let audit = draft(actor, "key.revoke", Some(id));
        Ok(self
            .store
            .change_key(id, &KeyChange::Revoke { reason }, self.clock.now(), audit)
            .await?)
    }

    /// A new secret for the key's lineage; the old key works until `grace`
    /// (at most [`MAX_GRACE`]) ends.
    pub async fn rotate(
        &self,
        id: Uuid,
        grace: Duration,
        actor: &Actor,
    ) -> Result<RotatedKey, ServiceError> {
        let grace = chrono::Duration::from_std(grace)
            .ok()
            .filter(|g| *g <= MAX_GRACE)
            .ok_or_else(|| {
                ServiceError::Invalid(vec![FieldError {
                    field: "grace".into(),
                    message: "a duration up to a year, e.g. \"24h\"".into(),
                }])
            })?;
        let old = self.get(id).await?;
        let (secret, new) = self.new_secret(&old.prefix)?;
        let until = new.created_at + grace;
        let audit = draft(actor, "key.rotate", Some(id));
        let (key, previous) = self.store.rotate_key(id, &new, until, audit).await?;
        Ok(RotatedKey {
            key,
            secret,
            previous,
        })
    }

    pub async fn delete(&self, id: Uuid, actor: &Actor) -> Result<(), ServiceError> {
        Ok(self
            .store
            .delete_key(id, self.clock.now(), draft(actor, "key.delete", Some(id)))
            .await?)
    }

    /// Parses a status filter (`all` = none).
    pub fn status_filter(s: &str) -> Result<Option<KeyStatus>, ServiceError> {
        if s == "all" {
            return Ok(None);
        }
        KeyStatus::parse(s).map(Some).ok_or_else(|| {
            ServiceError::Invalid(vec![FieldError {
                field: "status".into(),
                message: "must be active, disabled, expired, revoked or all".into(),
            }])
        })
    }
}

fn draft(actor: &Actor, action: &'static str, key_id: Option<Uuid>) -> AuditDraft {
    AuditDraft {
        actor: actor.clone(),
        action,
        key_id,
        changes: serde_json::Value::Null,
    }
}
