//! Key management: validates input, makes secrets, and calls the key store;
//! every change reaches running gateways through the store's change log.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use super::{ServiceError, page};
use crate::audit::{Actor, Audit, AuditSealer};
use crate::auth::hash::KeyHasher;
use crate::auth::key::{self, PlaintextKey};
use crate::clock::Clock;
use crate::config::{Config, LeakAction};
use crate::credits::{self, CreditChange, CreditOp, CreditState};
use crate::keys::model::{KeyPatch, KeyRecord, KeySpec, KeyStatus, NewKey};
use crate::keys::validate::{self as v, Errors};
use crate::routes::KnownRoutes;
use crate::store::{KeyChange, KeyQuery, KeyStore, WriteRules};

/// `leaked: <url>`, a valid revocation reason whatever the URL holds:
/// control characters dropped, at most 500 characters.
fn leak_reason(url: &str) -> String {
    let url: String = url.chars().filter(|c| !c.is_control()).take(490).collect();
    format!("leaked: {url}")
}

/// The longest rotation grace period, for the CLI and the admin API alike.
pub const MAX_GRACE: chrono::Duration = chrono::Duration::days(366);

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
    store: Arc<dyn KeyStore>,
    hasher: KeyHasher,
    sealer: AuditSealer,
    default_prefix: String,
    rules: WriteRules,
    /// The configured route names (replaced by a reload).
    routes: KnownRoutes,
    clock: Clock,
    hooks: crate::webhooks::Subscriptions,
}

impl KeyService {
    pub fn new(
        store: Arc<dyn KeyStore>,
        hasher: KeyHasher,
        sealer: AuditSealer,
        config: &Config,
        clock: Clock,
    ) -> KeyService {
        KeyService {
            store,
            hasher,
            sealer,
            default_prefix: config.keys.default_prefix.clone(),
            rules: WriteRules {
                max_per_owner: config.keys.max_per_owner,
            },
            routes: crate::routes::known(config.routes.iter().map(|r| r.name.as_str())),
            clock,
            hooks: crate::webhooks::Subscriptions::new(&config.webhooks),
        }
    }

    /// The route names keys are checked against; a reload stores new ones.
    pub fn known_routes(&self) -> &KnownRoutes {
        &self.routes
    }

    fn audit<'a>(&'a self, actor: &'a Actor, action: &'static str) -> Audit<'a> {
        Audit {
            sealer: &self.sealer,
            actor,
            action,
            hooks: Some(&self.hooks),
        }
    }

    /// A new secret with `prefix` and the key row that stores its hash.
    fn new_key(
        &self,
        prefix: &str,
        spec: KeySpec,
        credits: Option<CreditState>,
    ) -> Result<(PlaintextKey, NewKey), ServiceError> {
        let secret =
            key::generate(prefix).map_err(|e| ServiceError::field("prefix", e.to_string()))?;
        let id = crate::ids::uuid_v7();
        let new = NewKey {
            id,
            hash: self.hasher.hash(secret.expose()),
            prefix: prefix.to_owned(),
            hint: secret.hint(),
            lineage_id: id,
            created_at: self.clock.now(),
            spec,
            credits,
        };
        Ok((secret, new))
    }

    /// Validates a patch's fields and turns `expires_in` into `expires_at`.
    fn checked(&self, mut p: KeyPatch, now: DateTime<Utc>) -> Result<KeyPatch, ServiceError> {
        let mut e = Errors::default();
        v::patch(&mut e, &p, &self.routes.load());
        // `"expires_at": null` beside `expires_in` asks for nothing more.
        let at = p
            .expires_at
            .filter(|t| t.is_some() || p.expires_in.is_none());
        if let Some(at) = v::expiry(&mut e, p.expires_in.as_deref(), at, now) {
            p.expires_at = Some(at);
        }
        p.expires_in = None;
        e.into_result(p).map_err(ServiceError::Invalid)
    }

    /// Creates a key from a patch over the defaults (`owner_id` required).
    pub async fn create(
        &self,
        req: impl Into<KeyPatch>,
        actor: &Actor,
    ) -> Result<CreatedKey, ServiceError> {
        let req = req.into();
        if req.owner_id.as_deref().is_none_or(str::is_empty) {
            return Err(ServiceError::field("owner_id", "required"));
        }
        let mut req = self.checked(req, self.clock.now())?;
        let prefix = req
            .prefix
            .take()
            .unwrap_or_else(|| self.default_prefix.clone());
        let credits = req.credits.take().and_then(|input| {
            let op = CreditOp::Configure(input);
            credits::apply(None, &op, (0, 0), self.clock.now_ms()).0
        });
        let mut spec = KeySpec::default();
        req.apply_to(&mut spec);
        let (secret, new) = self.new_key(&prefix, spec, credits)?;
        let audit = self.audit(actor, "key.create");
        let key = self.store.insert_key(&new, self.rules, audit).await?;
        Ok(CreatedKey { key, secret })
    }

    pub async fn get(&self, id: Uuid) -> Result<KeyRecord, ServiceError> {
        self.store
            .get_key(id, self.clock.now())
            .await?
            .ok_or(ServiceError::Store(crate::store::StoreError::NotFound(id)))
    }

    /// A page of keys (at most [`page::MAX`]) and the cursor for the next one.
    pub async fn list(
        &self,
        mut q: KeyQuery,
    ) -> Result<(Vec<KeyRecord>, Option<Uuid>), ServiceError> {
        q.limit = q.limit.clamp(1, page::MAX);
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

    /// Every key matching `q`, page by page.
    pub async fn list_all(&self, mut q: KeyQuery) -> Result<Vec<KeyRecord>, ServiceError> {
        q.limit = page::MAX;
        let mut all = Vec::new();
        loop {
            let (keys, next) = self.list(q.clone()).await?;
            all.extend(keys);
            match next {
                Some(n) => q.after = Some(n),
                None => return Ok(all),
            }
        }
    }

    /// Changes the fields a patch carries. The owner and prefix are fixed.
    pub async fn update(
        &self,
        id: Uuid,
        req: KeyPatch,
        actor: &Actor,
    ) -> Result<KeyRecord, ServiceError> {
        let mut e = Errors::default();
        if req.owner_id.is_some() {
            e.add("owner_id", "cannot be changed");
        }
        if req.prefix.is_some() {
            e.add(
                "prefix",
                "cannot be changed; rotate the key for a new secret",
            );
        }
        if req.is_empty() {
            e.add("", "nothing to update");
        }
        e.into_result(()).map_err(ServiceError::Invalid)?;
        let now = self.clock.now();
        let patch = self.checked(req, now)?;
        let change = KeyChange::Patch(Box::new(patch));
        let audit = self.audit(actor, "key.update");
        Ok(self.store.change_key(id, &change, now, audit).await?)
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
        let change = KeyChange::Revoke { reason };
        let audit = self.audit(actor, "key.revoke");
        Ok(self
            .store
            .change_key(id, &change, self.clock.now(), audit)
            .await?)
    }

    /// A key reported leaked (secret scanning): revoked with reason
    /// `leaked: <url>` (audit `key.leaked`), or with `flag` marked so and left
    /// working (audit `key.flagged`). A key already revoked (or already
    /// flagged, when flagging) is left as it is, without another audit record.
    pub async fn leaked(
        &self,
        id: Uuid,
        url: &str,
        action: LeakAction,
        actor: &Actor,
    ) -> Result<KeyRecord, ServiceError> {
        let reason = leak_reason(url);
        let (change, action) = match action {
            LeakAction::Revoke => (
                KeyChange::Revoke {
                    reason: Some(reason),
                },
                "key.leaked",
            ),
            LeakAction::Flag => (KeyChange::Flag { reason }, "key.flagged"),
        };
        let audit = self.audit(actor, action);
        Ok(self
            .store
            .change_key(id, &change, self.clock.now(), audit)
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
            .ok_or_else(|| ServiceError::field("grace", "a duration up to a year, e.g. \"24h\""))?;
        let old = self.get(id).await?;
        // The store copies the old key's spec under its lock; this one is a placeholder.
        let (secret, new) = self.new_key(&old.prefix, old.spec, None)?;
        let until = new.created_at + grace;
        let audit = self.audit(actor, "key.rotate");
        let (key, previous) = self.store.rotate_key(id, &new, until, audit).await?;
        Ok(RotatedKey {
            key,
            secret,
            previous,
        })
    }

    /// Tops up or sets the key's credits (its lineage's: rotations share them).
    pub async fn credits(
        &self,
        id: Uuid,
        change: &CreditChange,
        actor: &Actor,
    ) -> Result<KeyRecord, ServiceError> {
        let mut e = Errors::default();
        let op = v::credit_change(&mut e, change);
        let op = e.into_result(op).map_err(ServiceError::Invalid)?;
        let Some(op) = op else {
            return Err(ServiceError::field("", "give add or set"));
        };
        let change = KeyChange::Credits(op);
        let audit = self.audit(actor, "key.credits");
        Ok(self
            .store
            .change_key(id, &change, self.clock.now(), audit)
            .await?)
    }

    pub async fn delete(&self, id: Uuid, actor: &Actor) -> Result<(), ServiceError> {
        let audit = self.audit(actor, "key.delete");
        Ok(self.store.delete_key(id, self.clock.now(), audit).await?)
    }

    /// Parses a status filter (`all` = none).
    pub fn status_filter(s: &str) -> Result<Option<KeyStatus>, ServiceError> {
        if s == "all" {
            return Ok(None);
        }
        KeyStatus::parse(s).map(Some).ok_or_else(|| {
            ServiceError::field(
                "status",
                "must be active, disabled, expired, revoked or all",
            )
        })
    }
}
