//! Persistent storage: keys (with their change log for sync), usage records and
//! the audit log. One trait, implemented for PostgreSQL and SQLite.

pub mod model;
pub mod postgres;
pub mod sqlite;

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use ipnetwork::IpNetwork;
use uuid::Uuid;

use crate::audit::{AuditDraft, AuditEntry, AuditSealer};
use crate::auth::hash::KeyHash;
use crate::config::{StoreConfig, StoreUrl};
use crate::ratelimit::window::Limits;
use crate::usage::UsageRecord;
use model::{KeyRecord, KeyStatus};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("key {0} not found")]
    NotFound(Uuid),
    #[error("owner {owner:?} already has {max} live keys (keys.max_per_owner)")]
    OwnerLimit { owner: String, max: u32 },
    #[error("key {id} is {status}; {what}")]
    Conflict {
        id: Uuid,
        status: &'static str,
        what: &'static str,
    },
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error("the database schema is missing or out of date; run `keygate migrate`")]
    Schema,
    #[error("database error: {0}")]
    Database(String),
    #[error("stored data is invalid: {0}")]
    Corrupt(String),
}

impl StoreError {
    pub fn is_unavailable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
}

/// A key to insert. Built by the key service, which owns validation and secrets.
#[derive(Debug, Clone)]
pub struct NewKey {
    pub id: Uuid,
    pub hash: KeyHash,
    pub prefix: String,
    pub hint: String,
    pub owner_id: String,
    pub name: String,
    pub scopes: Vec<String>,
    pub allowed_cidrs: Vec<IpNetwork>,
    pub allowed_routes: Vec<String>,
    pub rate_limits: Limits,
    pub metadata: BTreeMap<String, String>,
    pub tags: Vec<String>,
    pub enabled: bool,
    pub expires_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub lineage_id: Uuid,
}

/// A partial update: `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KeyPatch {
    pub name: Option<String>,
    pub scopes: Option<Vec<String>>,
    pub allowed_cidrs: Option<Vec<IpNetwork>>,
    pub allowed_routes: Option<Vec<String>>,
    pub rate_limits: Option<Limits>,
    pub metadata: Option<BTreeMap<String, String>>,
    pub tags: Option<Vec<String>>,
    pub enabled: Option<bool>,
    /// `Some(None)` clears the expiry.
    pub expires_at: Option<Option<DateTime<Utc>>>,
}

impl KeyPatch {
    pub fn is_empty(&self) -> bool {
        *self == KeyPatch::default()
    }
}

/// A change to an existing key.
#[derive(Debug, Clone)]
pub enum KeyChange {
    Patch(Box<KeyPatch>),
    Revoke { reason: Option<String> },
}

/// A key as the sync needs it: its lookup hash and the fields that decide and
/// forward requests (no display fields, no usage counts).
#[derive(Debug, Clone)]
pub struct KeyRow {
    pub id: Uuid,
    pub hash: KeyHash,
    pub owner_id: String,
    pub scopes: Vec<String>,
    pub allowed_cidrs: Vec<IpNetwork>,
    pub allowed_routes: Vec<String>,
    pub rate_limits: Limits,
    pub metadata: BTreeMap<String, String>,
    pub enabled: bool,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked: bool,
    pub rotated_to: Option<Uuid>,
    pub rotated_at: Option<DateTime<Utc>>,
    pub lineage_id: Uuid,
}

/// What changed after a change number.
#[derive(Debug, Default)]
pub struct Changes {
    pub upserts: Vec<KeyRow>,
    /// Hashes of deleted keys.
    pub deletes: Vec<KeyHash>,
    /// A deletion without a hash (from before the hash was recorded): the
    /// sync must reload everything.
    pub reload: bool,
    /// The highest change number included.
    pub seq: i64,
}

#[derive(Debug, Clone, Default)]
pub struct KeyQuery {
    pub owner_id: Option<String>,
    pub status: Option<KeyStatus>,
    pub tag: Option<String>,
    /// Keys after this id (ids are time-ordered UUIDv7).
    pub after: Option<Uuid>,
    pub limit: u32,
}

impl Changes {
    /// The changes after `seq`: `(change number, row)` of changed keys and
    /// `(change number, key hash)` of deleted ones.
    pub(crate) fn from_rows(
        seq: i64,
        upserts: Vec<(i64, KeyRow)>,
        tombstones: Vec<(i64, Option<Vec<u8>>)>,
    ) -> Changes {
        let mut out = Changes {
            seq,
            ..Changes::default()
        };
        for (s, row) in upserts {
            out.seq = out.seq.max(s);
            out.upserts.push(row);
        }
        for (s, hash) in tombstones {
            out.seq = out.seq.max(s);
            match hash.as_deref().and_then(KeyHash::from_slice) {
                Some(h) => out.deletes.push(h),
                None => out.reload = true,
            }
        }
        out
    }
}

impl KeyRecord {
    /// The API view of a key: its sync row plus the display fields.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn from_row(
        k: KeyRow,
        name: String,
        prefix: String,
        hint: String,
        tags: Vec<String>,
        revoked_at: Option<DateTime<Utc>>,
        revoked_reason: Option<String>,
        created_at: DateTime<Utc>,
        updated_at: DateTime<Utc>,
        last_used_at: Option<DateTime<Utc>>,
        use_count: i64,
        now: DateTime<Utc>,
    ) -> KeyRecord {
        let mut record = KeyRecord {
            id: k.id,
            owner_id: k.owner_id,
            name,
            prefix,
            hint,
            scopes: k.scopes,
            allowed_cidrs: k.allowed_cidrs,
            allowed_routes: k.allowed_routes,
            rate_limits: k.rate_limits,
            metadata: k.metadata,
            tags,
            enabled: k.enabled,
            expires_at: k.expires_at,
            revoked_at,
            revoked_reason,
            created_at,
            updated_at,
            last_used_at,
            use_count,
            status: KeyStatus::Active,
            rotated_to: k.rotated_to,
            rotated_at: k.rotated_at,
            lineage_id: k.lineage_id,
        };
        record.status = record.status_at(now);
        record
    }
}

/// A sink for a streamed snapshot.
pub type SnapshotSink<'a> = &'a mut (dyn FnMut(KeyRow) + Send);

/// Parses stored CIDR strings.
pub(crate) fn parse_cidrs(stored: &[String]) -> Result<Vec<IpNetwork>, StoreError> {
    stored
        .iter()
        .map(|c| {
            c.parse()
                .map_err(|_| StoreError::Corrupt(format!("bad CIDR {c:?}")))
        })
        .collect()
}

/// Wakes the key sync when keys change (Postgres LISTEN/NOTIFY).
#[async_trait]
pub trait ChangeListener: Send {
    /// Waits for the next change notification. `Ok(false)`: the connection was
    /// lost and re-established, so notifications may have been missed.
    async fn next(&mut self) -> Result<bool, StoreError>;
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    fn kind(&self) -> &'static str;
    async fn ping(&self) -> Result<(), StoreError>;
    async fn migrate(&self) -> Result<(), StoreError>;

    // Key mutations. Each appends its audit record in the same transaction.
    async fn insert_key(
        &self,
        key: &NewKey,
        max_per_owner: Option<u32>,
        audit: AuditDraft,
    ) -> Result<KeyRecord, StoreError>;
    async fn change_key(
        &self,
        id: Uuid,
        change: &KeyChange,
        now: DateTime<Utc>,
        audit: AuditDraft,
    ) -> Result<KeyRecord, StoreError>;
    /// Inserts `new` and marks `id` as rotated to it, expiring at `grace_until`.
    async fn rotate_key(
        &self,
        id: Uuid,
        new: &NewKey,
        grace_until: DateTime<Utc>,
        audit: AuditDraft,
    ) -> Result<(KeyRecord, KeyRecord), StoreError>;
    async fn delete_key(
        &self,
        id: Uuid,
        now: DateTime<Utc>,
        audit: AuditDraft,
    ) -> Result<(), StoreError>;

    // Key reads.
    async fn get_key(&self, id: Uuid, now: DateTime<Utc>) -> Result<Option<KeyRecord>, StoreError>;
    async fn list_keys(
        &self,
        q: &KeyQuery,
        now: DateTime<Utc>,
    ) -> Result<Vec<KeyRecord>, StoreError>;

    // Sync.
    /// Streams every key into `sink`; returns the change number it reflects.
    async fn snapshot(&self, sink: SnapshotSink<'_>) -> Result<i64, StoreError>;
    async fn changes_since(&self, seq: i64) -> Result<Changes, StoreError>;
    /// A push channel for changes, if the store has one (else the sync polls).
    async fn listen(&self) -> Result<Option<Box<dyn ChangeListener>>, StoreError>;
    /// For stores without a push channel: how often the sync must poll.
    fn poll_interval(&self) -> Option<std::time::Duration> {
        None
    }

    // Audit.
    async fn audit_page(&self, after: i64, limit: u32) -> Result<Vec<AuditEntry>, StoreError>;

    // Usage.
    /// Inserts records not seen before (by id), rolls them up hourly and adds
    /// them to the keys' `use_count`/`last_used_at`. Idempotent.
    async fn write_usage(&self, batch: &[UsageRecord]) -> Result<u64, StoreError>;
    /// Requests of one key in `[from, to)`, by bucket and outcome.
    async fn usage_buckets(
        &self,
        key_id: Uuid,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        granularity: Granularity,
    ) -> Result<Vec<UsageBucket>, StoreError>;
    /// Raw usage records, oldest first (for `keygate usage export`).
    async fn usage_events(&self, q: &UsageQuery) -> Result<Vec<UsageRecord>, StoreError>;
    /// Deletes raw usage records older than `before`; rollups stay.
    async fn prune_usage(&self, before: DateTime<Utc>) -> Result<u64, StoreError>;
}

#[derive(Debug, Clone, Default)]
pub struct UsageQuery {
    pub key_id: Option<Uuid>,
    /// Records after this id (ids are time-ordered).
    pub after: Option<Uuid>,
    pub limit: u32,
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Granularity {
    Hour,
    Day,
}

impl Granularity {
    pub fn as_str(self) -> &'static str {
        match self {
            Granularity::Hour => "hour",
            Granularity::Day => "day",
        }
    }
}

/// Requests of one key in one bucket with one outcome.
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct UsageBucket {
    pub start: DateTime<Utc>,
    pub outcome: String,
    pub requests: i64,
    pub latency_us_avg: i64,
    pub latency_us_max: i64,
    pub bytes_in: i64,
    pub bytes_out: i64,
}

pub type DynStore = Arc<dyn Store>;

/// Opens the configured store. Postgres does not connect yet (a gateway can
/// start while the database is down and becomes ready when it answers); SQLite
/// creates its file and schema if needed (embedded mode).
pub async fn open(cfg: &StoreConfig, sealer: AuditSealer) -> Result<DynStore, StoreError> {
    match &cfg.url {
        StoreUrl::Postgres(url) => Ok(Arc::new(postgres::PgStore::open(
            url.expose(),
            cfg.max_connections,
            sealer,
        )?)),
        StoreUrl::Sqlite(path) => Ok(Arc::new(sqlite::SqliteStore::open(path, sealer).await?)),
    }
}

/// Whether a key may be rotated now.
pub(crate) fn rotation_allowed(old: &KeyRecord, now: DateTime<Utc>) -> Result<(), StoreError> {
    let conflict = |status, what| {
        Err(StoreError::Conflict {
            id: old.id,
            status,
            what,
        })
    };
    if old.revoked_at.is_some() {
        return conflict("revoked", "a revoked key cannot be rotated");
    }
    if old.expires_at.is_some_and(|t| t <= now) {
        return conflict("expired", "an expired key cannot be rotated");
    }
    if old.rotated_to.is_some() {
        return conflict(
            "rotated",
            "it was already rotated; rotate its successor instead",
        );
    }
    Ok(())
}

/// The key that replaces `old` in a rotation: `new`'s id and secret, `old`'s
/// fields (read under the store's write lock) and rate-limit lineage.
pub(crate) fn successor(old: &KeyRecord, new: &NewKey) -> NewKey {
    NewKey {
        owner_id: old.owner_id.clone(),
        name: old.name.clone(),
        scopes: old.scopes.clone(),
        allowed_cidrs: old.allowed_cidrs.clone(),
        allowed_routes: old.allowed_routes.clone(),
        rate_limits: old.rate_limits,
        metadata: old.metadata.clone(),
        tags: old.tags.clone(),
        enabled: old.enabled,
        expires_at: old.expires_at,
        lineage_id: old.lineage_id,
        ..new.clone()
    }
}

/// The audit record for the key a rotation created.
/// The columns of a key row for the API (`k` = api_keys, `u` = its usage), with
/// the FROM clause; both schemas name them alike.
pub(crate) const KEY_COLUMNS: &str = "k.id, k.key_hash, k.prefix, k.hint, k.owner_id, k.name, k.scopes, k.allowed_cidrs, \
     k.allowed_routes, k.rate_limits, k.metadata, k.tags, k.enabled, k.expires_at, k.revoked_at, \
     k.revoked_reason, k.created_at, k.updated_at, k.rotated_to, k.rotated_at, k.lineage_id, k.change_seq, k.revoked_at IS NOT NULL AS revoked, \
     COALESCE(u.use_count, 0) AS use_count, u.last_used_at \
     FROM api_keys k LEFT JOIN api_key_usage u ON u.key_id = k.id";

/// The columns the key table needs (see [`KeyRow`]).
pub(crate) const SYNC_COLUMNS: &str = "id, key_hash, owner_id, scopes, allowed_cidrs, allowed_routes, rate_limits, metadata, \
     enabled, expires_at, revoked_at IS NOT NULL AS revoked, rotated_to, rotated_at, lineage_id, change_seq FROM api_keys";

pub(crate) fn created_by_rotation(actor: &str, created: &KeyRecord) -> AuditDraft {
    AuditDraft {
        actor: actor.to_owned(),
        action: "key.create",
        key_id: Some(created.id),
        changes: audit_changes(None, created),
    }
}

/// Whether `change` may apply to `before`: `Ok(false)` when it changes
/// nothing (revoking a revoked key), a conflict when it may not (a revoked
/// key is immutable).
pub(crate) fn change_allowed(before: &KeyRecord, change: &KeyChange) -> Result<bool, StoreError> {
    match change {
        _ if before.revoked_at.is_none() => Ok(true),
        KeyChange::Revoke { .. } => Ok(false),
        KeyChange::Patch(_) => Err(StoreError::Conflict {
            id: before.id,
            status: "revoked",
            what: "a revoked key cannot be changed",
        }),
    }
}

/// `max_per_owner`, given the owner's count of live keys.
pub(crate) fn owner_limit(owner: &str, live: i64, max: u32) -> Result<(), StoreError> {
    if live >= i64::from(max) {
        return Err(StoreError::OwnerLimit {
            owner: owner.to_owned(),
            max,
        });
    }
    Ok(())
}

/// The audit record's `changes`: the fields that differ from `before` (all of
/// them for a new key), without the ones every write touches.
pub(crate) fn audit_changes(before: Option<&KeyRecord>, after: &KeyRecord) -> serde_json::Value {
    let before = before.map_or_else(|| serde_json::json!({}), key_json);
    crate::audit::chain::diff(&before, &key_json(after), AUDIT_IGNORE)
}

pub(crate) fn key_json(r: &KeyRecord) -> serde_json::Value {
    serde_json::to_value(r).unwrap_or_default()
}

/// Fields that change on every write and are not interesting in the audit log.
pub(crate) const AUDIT_IGNORE: &[&str] = &["updated_at", "status", "use_count", "last_used_at"];
