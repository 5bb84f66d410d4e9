//! The key store, key feed and audit log, written once for every SQL backend.
//!
//! A backend provides a [`Dialect`]: how to open a locked write transaction,
//! a consistent read, or a plain connection ([`Session`]s), how it binds
//! [`Value`]s and reads rows ([`SqlRow`]), and the few SQL fragments that
//! differ ([`Fragments`]). Statements use `$1`-style placeholders, which both
//! Postgres and SQLite accept.

mod audit;
mod credits;
mod feed;
mod keys;
mod outbox;
mod owners;
pub(crate) mod session;
mod totals;
mod usage;
mod value;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::{ChangeListener, Database, StoreError};
use crate::usage::UsageRecord;
pub(crate) use totals::upsert_rollup;
pub use totals::{Rollup, RollupKey, Totals, Uses, write_rows};
pub use usage::{Inserted, record_time};
pub use value::{Column, SqlRow, Value};

/// SQL that differs between backends.
pub struct Fragments {
    /// A predicate on `k` (api_keys): `$2` is NULL or one of the key's tags.
    pub has_tag: &'static str,
    /// One row, column `seq`: the change number a snapshot reflects.
    pub head_seq: &'static str,
    /// The start of the `$4`-second bucket that rollup column `hour` is in.
    pub bucket_start: &'static str,
    /// After the outbox claim's row selection: how rows already being
    /// claimed by another transaction are skipped (`FOR UPDATE SKIP LOCKED`;
    /// empty where a transaction holds the whole database, as SQLite's).
    pub claim_lock: &'static str,
}

/// Statements on one connection: inside a transaction or not.
#[async_trait]
pub trait Session: Send {
    type Row: SqlRow + Send;

    async fn fetch_all(
        &mut self,
        sql: &str,
        args: Vec<Value>,
    ) -> Result<Vec<Self::Row>, StoreError>;

    async fn fetch_optional(
        &mut self,
        sql: &str,
        args: Vec<Value>,
    ) -> Result<Option<Self::Row>, StoreError>;

    /// Runs a statement; returns the rows it affected.
    async fn execute(&mut self, sql: &str, args: Vec<Value>) -> Result<u64, StoreError>;

    /// Streams the rows of a query into `each`, one at a time.
    async fn for_each(
        &mut self,
        sql: &str,
        args: Vec<Value>,
        each: &mut (dyn FnMut(Self::Row) -> Result<(), StoreError> + Send),
    ) -> Result<(), StoreError>;

    /// Commits a transaction; a plain connection has nothing to commit.
    async fn commit(self) -> Result<(), StoreError>;
}

/// What a backend provides to the shared SQL.
#[async_trait]
pub trait Dialect: Send + Sync + 'static {
    type Session: Session;

    /// `postgres`, `sqlite`: for logs and `keygate migrate`.
    const KIND: &'static str;
    const FRAGMENTS: Fragments;

    /// A transaction that holds the key-write lock until it ends, so that
    /// change numbers commit in order.
    async fn write(&self) -> Result<Self::Session, StoreError>;
    /// A read-only transaction with one consistent view of every table.
    async fn read(&self) -> Result<Self::Session, StoreError>;
    /// A transaction for other writes (usage): no key-write lock.
    async fn begin(&self) -> Result<Self::Session, StoreError>;
    /// A pooled connection, no transaction.
    async fn conn(&self) -> Result<Self::Session, StoreError>;

    /// Inserts the records not stored yet (by id), in bulk; says which.
    async fn insert_usage(
        &self,
        tx: &mut Self::Session,
        batch: &[UsageRecord],
    ) -> Result<Inserted, StoreError>;

    /// Adds a batch's rollups and key use counts: one statement per row,
    /// unless the backend has a bulk form.
    async fn add_totals(&self, tx: &mut Self::Session, totals: &Totals) -> Result<(), StoreError> {
        totals.write_each(tx).await
    }

    /// Applies the backend's schema migrations (idempotent).
    async fn migrate(&self) -> Result<(), StoreError>;

    /// A push channel for key changes, if the backend has one.
    async fn listen(&self) -> Result<Option<Box<dyn ChangeListener>>, StoreError>;
    /// For backends without a push channel: how often the sync must poll.
    fn poll_interval(&self) -> Option<Duration>;
}

/// The shared store over a backend's dialect.
pub struct SqlStore<D> {
    d: Arc<D>,
    sql: Statements,
}

impl<D: Dialect> SqlStore<D> {
    pub fn new(d: Arc<D>) -> SqlStore<D> {
        SqlStore {
            d,
            sql: Statements::new(&D::FRAGMENTS),
        }
    }
}

/// The statements built from column lists and fragments, once per store.
struct Statements {
    key_by_id: String,
    key_page: String,
    insert_key: String,
    update_spec: String,
    sync_all: String,
    sync_since: String,
    sync_owners: String,
    sync_owners_since: String,
    owner_by_id: String,
    owner_page: String,
    insert_owner: String,
    update_owner: String,
    usage_buckets: String,
    owner_usage_buckets: String,
    claim: String,
}

impl Statements {
    fn new(f: &Fragments) -> Statements {
        Statements {
            key_by_id: keys::select_by_id(),
            key_page: keys::select_page(f),
            insert_key: keys::insert_sql(),
            update_spec: keys::update_spec_sql(),
            sync_all: feed::select_all(),
            sync_since: feed::select_since(),
            sync_owners: feed::select_owners(),
            sync_owners_since: feed::select_owners_since(),
            owner_by_id: owners::select_by_id(),
            owner_page: owners::select_page(),
            insert_owner: owners::insert_sql(),
            update_owner: owners::update_sql(),
            usage_buckets: usage::buckets_sql(f.bucket_start, usage::KEY_SUBJECT),
            owner_usage_buckets: usage::buckets_sql(f.bucket_start, usage::OWNER_SUBJECT),
            claim: outbox::claim_sql(f.claim_lock),
        }
    }
}

#[async_trait]
impl<D: Dialect> Database for SqlStore<D> {
    fn kind(&self) -> &'static str {
        D::KIND
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.d.conn().await?.execute("SELECT 1", vec![]).await?;
        Ok(())
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        self.d.migrate().await
    }
}

/// `"a = $2, b = $3"` for columns numbered from `first`.
fn assignments(cols: &[&str], first: usize) -> String {
    cols.iter()
        .enumerate()
        .map(|(i, c)| format!("{c} = ${}", first + i))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `"$1, $2, ..., $n"`.
fn placeholders(n: usize) -> String {
    (1..=n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    #[test]
    fn placeholders_and_assignments() {
        assert_eq!(super::placeholders(3), "$1, $2, $3");
        assert_eq!(super::assignments(&["a", "b"], 2), "a = $2, b = $3");
    }
}
