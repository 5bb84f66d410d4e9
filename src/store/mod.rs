//! Persistent storage, split by concern: [`KeyStore`] (key writes, each with
//! its audit record, and reads), [`KeyFeed`] (what the gateways' key tables
//! load), [`AuditLog`] and [`UsageStore`]. The key, feed and audit parts are
//! written once in [`sql`] over a small per-backend layer ([`sql::Dialect`]);
//! [`postgres`] and [`sqlite`] add what only they have (LISTEN/NOTIFY,
//! migrations, bulk usage writes).

mod error;
pub mod postgres;
pub mod sql;
pub mod sqlite;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::audit::{Audit, AuditEntry};
use crate::auth::hash::KeyHash;
use crate::config::{StoreConfig, StoreUrl};
use crate::credits::{Account, CreditOp};
use crate::keys::model::{KeyPatch, KeyRecord, KeyRow, KeyStatus, NewKey};
use crate::owners::{OwnerPatch, OwnerRecord, OwnerRow};
use crate::usage::UsageRecord;
pub use error::{ConflictReason, StoreError};

/// A change to an existing key.
#[derive(Debug, Clone)]
pub enum KeyChange {
    Patch(Box<KeyPatch>),
    Revoke {
        reason: Option<String>,
    },
    /// A top-up or set (of the key's lineage: its rotations share the balance).
    Credits(CreditOp),
    /// Marks the key as reported leaked; it keeps working.
    Flag {
        reason: String,
    },
}

/// A change to an existing owner.
#[derive(Debug, Clone)]
pub enum OwnerChange {
    Patch(Box<OwnerPatch>),
    Credits(CreditOp),
}

#[derive(Debug, Clone, Default)]
pub struct OwnerQuery {
    /// Owners after this id (in id order).
    pub after: Option<String>,
    pub limit: u32,
}

/// Limits that only the store can check, under its write lock.
#[derive(Debug, Clone, Copy)]
pub struct WriteRules {
    /// Live (not revoked, not expired) keys per owner.
    pub max_per_owner: u32,
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

/// Key writes and reads. Each write appends its audit record (sealed by the
/// caller's [`Audit`]) in the same transaction.
#[async_trait]
pub trait KeyStore: Send + Sync {
    async fn insert_key(
        &self,
        key: &NewKey,
        rules: WriteRules,
        audit: Audit<'_>,
    ) -> Result<KeyRecord, StoreError>;
    async fn change_key(
        &self,
        id: Uuid,
        change: &KeyChange,
        now: DateTime<Utc>,
        audit: Audit<'_>,
    ) -> Result<KeyRecord, StoreError>;
    /// Inserts `new` with `id`'s spec and lineage and marks `id` as rotated
    /// to it, expiring at `grace_until` at the latest. Returns (new, old).
    async fn rotate_key(
        &self,
        id: Uuid,
        new: &NewKey,
        grace_until: DateTime<Utc>,
        audit: Audit<'_>,
    ) -> Result<(KeyRecord, KeyRecord), StoreError>;
    /// Erases the key and its usage.
    async fn delete_key(
        &self,
        id: Uuid,
        now: DateTime<Utc>,
        audit: Audit<'_>,
    ) -> Result<(), StoreError>;
    async fn get_key(&self, id: Uuid, now: DateTime<Utc>) -> Result<Option<KeyRecord>, StoreError>;
    async fn list_keys(
        &self,
        q: &KeyQuery,
        now: DateTime<Utc>,
    ) -> Result<Vec<KeyRecord>, StoreError>;
}

/// Owner writes and reads, each with its audit record in the same transaction.
#[async_trait]
pub trait OwnerStore: Send + Sync {
    /// Creates `patch.id`; a conflict if it exists.
    async fn insert_owner(
        &self,
        patch: &OwnerPatch,
        now: DateTime<Utc>,
        audit: Audit<'_>,
    ) -> Result<OwnerRecord, StoreError>;
    async fn change_owner(
        &self,
        id: &str,
        change: &OwnerChange,
        now: DateTime<Utc>,
        audit: Audit<'_>,
    ) -> Result<OwnerRecord, StoreError>;
    /// Deletes an owner that has no keys.
    async fn delete_owner(
        &self,
        id: &str,
        now: DateTime<Utc>,
        audit: Audit<'_>,
    ) -> Result<(), StoreError>;
    async fn get_owner(
        &self,
        id: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<OwnerRecord>, StoreError>;
    async fn list_owners(
        &self,
        q: &OwnerQuery,
        now: DateTime<Utc>,
    ) -> Result<Vec<OwnerRecord>, StoreError>;
}

/// The ledger side of a balance: what the usage records debited so far.
#[async_trait]
pub trait CreditLedger: Send + Sync {
    /// The epoch and the credits spent in it, as recorded (`(0, 0)`: none).
    async fn recorded_spent(&self, account: &Account) -> Result<(i64, i64), StoreError>;
}

/// One row of the feed's snapshot.
#[derive(Debug, Clone)]
pub enum FeedRow {
    Owner(Box<OwnerRow>),
    Key(Box<KeyRow>),
}

/// What changed after a change number.
#[derive(Debug, Default)]
pub struct Changes {
    pub upserts: Vec<KeyRow>,
    /// Hashes of deleted keys.
    pub deletes: Vec<KeyHash>,
    pub owners: Vec<OwnerRow>,
    /// Ids of deleted owners.
    pub owner_deletes: Vec<String>,
    /// A deletion without a hash (from before the hash was recorded): the
    /// sync must reload everything.
    pub reload: bool,
    /// The highest change number included.
    pub seq: i64,
}

/// A sink for a streamed snapshot: every owner, then every key.
pub type SnapshotSink<'a> = &'a mut (dyn FnMut(FeedRow) + Send);

/// Wakes the key sync when keys change (Postgres LISTEN/NOTIFY).
#[async_trait]
pub trait ChangeListener: Send {
    /// Waits for the next change notification. `Ok(false)`: the connection was
    /// lost and re-established, so notifications may have been missed.
    async fn next(&mut self) -> Result<bool, StoreError>;
}

/// The keys as the gateways' tables load them: a snapshot, then changes.
#[async_trait]
pub trait KeyFeed: Send + Sync {
    /// Streams every key into `sink`; returns the change number it reflects.
    async fn snapshot(&self, sink: SnapshotSink<'_>) -> Result<i64, StoreError>;
    async fn changes_since(&self, seq: i64) -> Result<Changes, StoreError>;
    /// A push channel for changes, if the store has one (else the sync polls).
    async fn listen(&self) -> Result<Option<Box<dyn ChangeListener>>, StoreError>;
    /// For stores without a push channel: how often the sync must poll.
    fn poll_interval(&self) -> Option<Duration>;
}

#[async_trait]
pub trait AuditLog: Send + Sync {
    /// Records after `after`, oldest first.
    async fn audit_page(&self, after: i64, limit: u32) -> Result<Vec<AuditEntry>, StoreError>;
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

/// Whose usage a report is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UsageSubject {
    Key(Uuid),
    /// Every key of the owner.
    Owner(String),
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
    /// Credits these requests were charged.
    pub credits: i64,
}

#[async_trait]
pub trait UsageStore: Send + Sync {
    /// Inserts records not seen before (by id), rolls them up hourly and adds
    /// them to the keys' `use_count`/`last_used_at`. Idempotent.
    async fn write_usage(&self, batch: &[UsageRecord]) -> Result<u64, StoreError>;
    /// Requests of one key (or owner) in `[from, to)`, by bucket and outcome.
    async fn usage_buckets(
        &self,
        subject: &UsageSubject,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        granularity: Granularity,
    ) -> Result<Vec<UsageBucket>, StoreError>;
    /// Raw usage records, oldest first (for `keygate usage export`).
    async fn usage_events(&self, q: &UsageQuery) -> Result<Vec<UsageRecord>, StoreError>;
    /// Deletes raw usage records older than `before`; rollups stay.
    async fn prune_usage(&self, before: DateTime<Utc>) -> Result<u64, StoreError>;
}

/// The webhook outbox (see [`crate::webhooks`]).
#[async_trait]
pub trait WebhookStore: Send + Sync {
    /// Inserts `event` for each endpoint that does not have its id yet;
    /// returns the rows inserted (0: already enqueued).
    async fn enqueue(
        &self,
        event: &crate::webhooks::model::NewEvent,
        endpoints: &[&str],
    ) -> Result<u64, StoreError>;
    /// Leases up to `limit` due deliveries until `lease_until`, skipping any
    /// another worker holds.
    async fn claim(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<crate::webhooks::model::Claimed>, StoreError>;
    /// Records how an attempt ended and releases the lease.
    async fn settle(
        &self,
        id: Uuid,
        outcome: &crate::webhooks::model::Settle,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    /// A page of the delivery log, newest first.
    async fn deliveries(
        &self,
        q: &crate::webhooks::model::DeliveryQuery,
    ) -> Result<Vec<crate::webhooks::model::Delivery>, StoreError>;
    /// Makes a delivery due now with a fresh retry period; `None`: no such id.
    async fn retry(
        &self,
        id: Uuid,
        now: DateTime<Utc>,
    ) -> Result<Option<crate::webhooks::model::Delivery>, StoreError>;
    /// Deletes delivered and dead rows whose last attempt was before `before`.
    async fn prune(&self, before: DateTime<Utc>) -> Result<u64, StoreError>;
    /// Deliveries not yet delivered or dead.
    async fn backlog(&self) -> Result<i64, StoreError>;
    /// Live keys expiring in `(now, until]`, soonest first.
    async fn expiring_keys(
        &self,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<crate::webhooks::model::ExpiringKey>, StoreError>;
}

/// The database itself: what it is, whether it answers, its schema.
#[async_trait]
pub trait Database: Send + Sync {
    fn kind(&self) -> &'static str;
    async fn ping(&self) -> Result<(), StoreError>;
    /// Applies the schema migrations (idempotent).
    async fn migrate(&self) -> Result<(), StoreError>;
}

/// One store, seen through each concern's trait.
#[derive(Clone)]
pub struct Stores {
    pub db: Arc<dyn Database>,
    pub keys: Arc<dyn KeyStore>,
    pub owners: Arc<dyn OwnerStore>,
    pub credits: Arc<dyn CreditLedger>,
    pub feed: Arc<dyn KeyFeed>,
    pub audit: Arc<dyn AuditLog>,
    pub usage: Arc<dyn UsageStore>,
    pub webhooks: Arc<dyn WebhookStore>,
}

impl Stores {
    /// The shared SQL over a backend.
    pub fn over<D: sql::Dialect>(d: D) -> Stores {
        let s = Arc::new(sql::SqlStore::new(Arc::new(d)));
        Stores {
            db: s.clone(),
            keys: s.clone(),
            owners: s.clone(),
            credits: s.clone(),
            feed: s.clone(),
            audit: s.clone(),
            usage: s.clone(),
            webhooks: s,
        }
    }
}

/// Opens the configured store. Postgres does not connect yet (a gateway can
/// start while the database is down and becomes ready when it answers); SQLite
/// creates its file and schema if needed (embedded mode).
pub async fn open(cfg: &StoreConfig) -> Result<Stores, StoreError> {
    match &cfg.url {
        StoreUrl::Postgres(url) => Ok(Stores::over(postgres::open(postgres::PgSettings {
            url: url.expose(),
            max_connections: cfg.max_connections,
            pooler: cfg.pooler,
            listen_url: cfg.listen_url.as_ref().map(|u| u.expose()),
        })?)),
        StoreUrl::Sqlite(path) => Ok(Stores::over(sqlite::open(path).await?)),
    }
}
