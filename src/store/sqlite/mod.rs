//! The embedded SQLite store: the same capabilities as Postgres. Write
//! transactions take SQLite's write lock up front (`BEGIN IMMEDIATE`); triggers
//! number every key change, and gateways poll for changes (no LISTEN/NOTIFY).

mod rows;
mod usage;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::types::Json;
use sqlx::{Row, Sqlite, Transaction};
use uuid::Uuid;

use super::model::KeyRecord;
use super::*;
use rows::{decode, decode_row, status_clause};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

pub struct SqliteStore {
    pool: SqlitePool,
    sealer: AuditSealer,
}

pub(crate) fn db_err(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => StoreError::Unavailable(e.to_string()),
        sqlx::Error::Database(d)
            if d.message().contains("no such table") || d.message().contains("no such column") =>
        {
            StoreError::Schema
        }
        sqlx::Error::Database(d) if d.message().contains("database is locked") => {
            StoreError::Unavailable(e.to_string())
        }
        _ => StoreError::Database(e.to_string()),
    }
}

pub(crate) fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

pub(crate) fn time(us: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(us).unwrap_or_default()
}

impl SqliteStore {
    /// Opens (creating the file and its directory if needed) and migrates.
    pub async fn open(path: &Path, sealer: AuditSealer) -> Result<SqliteStore, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                StoreError::Database(format!("cannot create {}: {e}", dir.display()))
            })?;
        }
        let opts = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))
            .map_err(|e| StoreError::Database(format!("store.url: {e}")))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(opts)
            .await
            .map_err(db_err)?;
        let store = SqliteStore { pool, sealer };
        store.migrate().await?;
        Ok(store)
    }

    async fn begin_write(&self) -> Result<Transaction<'_, Sqlite>, StoreError> {
        self.pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(db_err)
    }

    async fn append_audit(
        &self,
        tx: &mut Transaction<'_, Sqlite>,
        draft: AuditDraft,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let last = sqlx::query("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
            .fetch_optional(&mut **tx)
            .await
            .map_err(db_err)?;
        let prev: Option<(i64, Vec<u8>)> = match last {
            Some(r) => Some((r.try_get(0).map_err(db_err)?, r.try_get(1).map_err(db_err)?)),
            None => None,
        };
        let e = self
            .sealer
            .seal(prev.as_ref().map(|(s, h)| (*s, h.as_slice())), draft, now);
        sqlx::query("INSERT INTO audit_log (seq, at, actor, action, key_id, changes, prev_hash, hash) VALUES (?1,?2,?3,?4,?5,?6,?7,?8)")
            .bind(e.seq)
            .bind(micros(e.at))
            .bind(&e.actor)
            .bind(&e.action)
            .bind(e.key_id)
            .bind(&e.changes)
            .bind(&e.prev_hash)
            .bind(&e.hash)
            .execute(&mut **tx)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn fetch_key(
        &self,
        tx: &mut Transaction<'_, Sqlite>,
        id: Uuid,
        now: DateTime<Utc>,
    ) -> Result<KeyRecord, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {KEY_COLUMNS} WHERE k.id = ?1"
        )))
        .bind(id)
        .fetch_optional(&mut **tx)
        .await
        .map_err(db_err)?
        .ok_or(StoreError::NotFound(id))?;
        decode(&row, now)
    }

    async fn insert_row(
        &self,
        tx: &mut Transaction<'_, Sqlite>,
        k: &NewKey,
    ) -> Result<(), StoreError> {
        let cidrs: Vec<String> = k.allowed_cidrs.iter().map(ToString::to_string).collect();
        sqlx::query(
            "INSERT INTO api_keys (id, key_hash, prefix, hint, owner_id, name, scopes, allowed_cidrs, allowed_routes, \
             rate_limits, metadata, tags, enabled, expires_at, created_at, updated_at, lineage_id) \
             VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?15,?16)",
        )
        .bind(k.id)
        .bind(k.hash.0.as_slice())
        .bind(&k.prefix)
        .bind(&k.hint)
        .bind(&k.owner_id)
        .bind(&k.name)
        .bind(Json(&k.scopes))
        .bind(Json(&cidrs))
        .bind(Json(&k.allowed_routes))
        .bind(Json(&k.rate_limits))
        .bind(Json(&k.metadata))
        .bind(Json(&k.tags))
        .bind(k.enabled)
        .bind(k.expires_at.map(micros))
        .bind(micros(k.created_at))
        .bind(k.lineage_id)
        .execute(&mut **tx)
        .await
        .map_err(db_err)?;
        sqlx::query("INSERT INTO api_key_usage (key_id) VALUES (?1)")
            .bind(k.id)
            .execute(&mut **tx)
            .await
            .map_err(db_err)?;
        Ok(())
    }
}

#[async_trait]
impl Store for SqliteStore {
    fn kind(&self) -> &'static str {
        "sqlite"
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        MIGRATOR.run(&self.pool).await.map_err(|e| match e {
            sqlx::migrate::MigrateError::Execute(e) => db_err(e),
            other => StoreError::Database(other.to_string()),
        })
    }

    async fn insert_key(
        &self,
        key: &NewKey,
        max_per_owner: Option<u32>,
        mut audit: AuditDraft,
    ) -> Result<KeyRecord, StoreError> {
        let mut tx = self.begin_write().await?;
        if let Some(max) = max_per_owner {
            let live: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM api_keys WHERE owner_id = ?1 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > ?2)",
            )
            .bind(&key.owner_id)
            .bind(micros(key.created_at))
            .fetch_one(&mut *tx)
            .await
            .map_err(db_err)?;
            owner_limit(&key.owner_id, live, max)?;
        }
        self.insert_row(&mut tx, key).await?;
        let record = self.fetch_key(&mut tx, key.id, key.created_at).await?;
        audit.changes = audit_changes(None, &record);
        self.append_audit(&mut tx, audit, key.created_at).await?;
        tx.commit().await.map_err(db_err)?;
        Ok(record)
    }

    async fn change_key(
        &self,
        id: Uuid,
        change: &KeyChange,
        now: DateTime<Utc>,
        mut audit: AuditDraft,
    ) -> Result<KeyRecord, StoreError> {
        let mut tx = self.begin_write().await?;
        let before = self.fetch_key(&mut tx, id, now).await?;
        if !change_allowed(&before, change)? {
            return Ok(before);
        }
        match change {
            KeyChange::Patch(p) => {
                let cidrs: Option<Vec<String>> = p
                    .allowed_cidrs
                    .as_ref()
                    .map(|c| c.iter().map(ToString::to_string).collect());
                sqlx::query(
                    "UPDATE api_keys SET name = COALESCE(?2, name), scopes = COALESCE(?3, scopes), \
                     allowed_cidrs = COALESCE(?4, allowed_cidrs), allowed_routes = COALESCE(?5, allowed_routes), \
                     rate_limits = COALESCE(?6, rate_limits), metadata = COALESCE(?7, metadata), \
                     tags = COALESCE(?8, tags), enabled = COALESCE(?9, enabled), \
                     expires_at = CASE WHEN ?10 THEN ?11 ELSE expires_at END, updated_at = ?12 WHERE id = ?1",
                )
                .bind(id)
                .bind(p.name.as_ref())
                .bind(p.scopes.as_ref().map(Json))
                .bind(cidrs.as_ref().map(Json))
                .bind(p.allowed_routes.as_ref().map(Json))
                .bind(p.rate_limits.as_ref().map(Json))
                .bind(p.metadata.as_ref().map(Json))
                .bind(p.tags.as_ref().map(Json))
                .bind(p.enabled)
                .bind(p.expires_at.is_some())
                .bind(p.expires_at.flatten().map(micros))
                .bind(micros(now))
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
            }
            KeyChange::Revoke { reason } => {
                sqlx::query("UPDATE api_keys SET revoked_at = ?2, revoked_reason = ?3, updated_at = ?2 WHERE id = ?1")
                    .bind(id)
                    .bind(micros(now))
                    .bind(reason.as_ref())
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err)?;
            }
        }
        let after = self.fetch_key(&mut tx, id, now).await?;
        audit.changes = audit_changes(Some(&before), &after);
        self.append_audit(&mut tx, audit, now).await?;
        tx.commit().await.map_err(db_err)?;
        Ok(after)
    }

    async fn rotate_key(
        &self,
        id: Uuid,
        new: &NewKey,
        grace_until: DateTime<Utc>,
        mut audit: AuditDraft,
    ) -> Result<(KeyRecord, KeyRecord), StoreError> {
        let now = new.created_at;
        let mut tx = self.begin_write().await?;
        let old = self.fetch_key(&mut tx, id, now).await?;
        rotation_allowed(&old, now)?;
        let copy = successor(&old, new);
        self.insert_row(&mut tx, &copy).await?;
        sqlx::query(
            "UPDATE api_keys SET rotated_to = ?2, rotated_at = ?3, updated_at = ?3, \
             expires_at = MIN(COALESCE(expires_at, ?4), ?4) WHERE id = ?1",
        )
        .bind(id)
        .bind(copy.id)
        .bind(micros(now))
        .bind(micros(grace_until))
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        let prev = self.fetch_key(&mut tx, id, now).await?;
        let created = self.fetch_key(&mut tx, copy.id, now).await?;
        let created_audit = created_by_rotation(&audit.actor, &created);
        audit.changes = audit_changes(Some(&old), &prev);
        self.append_audit(&mut tx, audit, now).await?;
        self.append_audit(&mut tx, created_audit, now).await?;
        tx.commit().await.map_err(db_err)?;
        Ok((created, prev))
    }

    async fn delete_key(
        &self,
        id: Uuid,
        now: DateTime<Utc>,
        audit: AuditDraft,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        let gone = sqlx::query("DELETE FROM api_keys WHERE id = ?1")
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        if gone.rows_affected() == 0 {
            return Err(StoreError::NotFound(id));
        }
        for sql in [
            "DELETE FROM usage_events WHERE key_id = ?1",
            "DELETE FROM usage_hourly WHERE key_id = ?1",
        ] {
            sqlx::query(sql)
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
        }
        self.append_audit(&mut tx, audit, now).await?;
        tx.commit().await.map_err(db_err)?;
        Ok(())
    }

    async fn get_key(&self, id: Uuid, now: DateTime<Utc>) -> Result<Option<KeyRecord>, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {KEY_COLUMNS} WHERE k.id = ?1"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?;
        row.map(|r| decode(&r, now)).transpose()
    }

    async fn list_keys(
        &self,
        q: &KeyQuery,
        now: DateTime<Utc>,
    ) -> Result<Vec<KeyRecord>, StoreError> {
        let mut sql = format!(
            "SELECT {KEY_COLUMNS} WHERE (?1 IS NULL OR k.owner_id = ?1) \
             AND (?2 IS NULL OR EXISTS (SELECT 1 FROM json_each(k.tags) WHERE value = ?2)) AND (?3 IS NULL OR k.id > ?3)"
        );
        sql.push_str(" AND ");
        sql.push_str(q.status.map_or("?5 IS NOT NULL", status_clause));
        sql.push_str(" ORDER BY k.id LIMIT ?4");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(q.owner_id.as_ref())
            .bind(q.tag.as_ref())
            .bind(q.after)
            .bind(i64::from(q.limit))
            .bind(micros(now))
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
        rows.iter().map(|r| decode(r, now)).collect()
    }

    async fn snapshot(&self, sink: SnapshotSink<'_>) -> Result<i64, StoreError> {
        // One read transaction: a consistent view of the keys and their change number.
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        let seq: i64 = sqlx::query_scalar("SELECT seq FROM key_change_seq WHERE id = 1")
            .fetch_one(&mut *tx)
            .await
            .map_err(db_err)?;
        {
            let sql = sqlx::AssertSqlSafe(format!("SELECT {SYNC_COLUMNS}"));
            let mut rows = sqlx::query(sql).fetch(&mut *tx);
            while let Some(row) = rows.try_next().await.map_err(db_err)? {
                sink(decode_row(&row)?);
            }
        }
        tx.commit().await.map_err(db_err)?;
        Ok(seq)
    }

    async fn changes_since(&self, seq: i64) -> Result<Changes, StoreError> {
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {SYNC_COLUMNS} WHERE change_seq > ?1 ORDER BY change_seq"
        )))
        .bind(seq)
        .fetch_all(&mut *tx)
        .await
        .map_err(db_err)?;
        let tombs = sqlx::query(
            "SELECT key_hash, change_seq FROM api_key_tombstones WHERE change_seq > ?1",
        )
        .bind(seq)
        .fetch_all(&mut *tx)
        .await
        .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        let upserts = rows
            .iter()
            .map(|r| Ok((r.try_get("change_seq").map_err(db_err)?, decode_row(r)?)))
            .collect::<Result<Vec<_>, StoreError>>()?;
        let tombstones = tombs
            .iter()
            .map(|t| {
                Ok((
                    t.try_get("change_seq").map_err(db_err)?,
                    t.try_get("key_hash").map_err(db_err)?,
                ))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(Changes::from_rows(seq, upserts, tombstones))
    }

    async fn listen(&self) -> Result<Option<Box<dyn ChangeListener>>, StoreError> {
        Ok(None)
    }

    fn poll_interval(&self) -> Option<Duration> {
        Some(POLL_INTERVAL)
    }

    async fn audit_page(&self, after: i64, limit: u32) -> Result<Vec<AuditEntry>, StoreError> {
        let rows = sqlx::query("SELECT seq, at, actor, action, key_id, changes, prev_hash, hash FROM audit_log WHERE seq > ?1 ORDER BY seq LIMIT ?2")
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
        rows.iter()
            .map(|r| {
                Ok(AuditEntry {
                    seq: r.try_get("seq").map_err(db_err)?,
                    at: time(r.try_get("at").map_err(db_err)?),
                    actor: r.try_get("actor").map_err(db_err)?,
                    action: r.try_get("action").map_err(db_err)?,
                    key_id: r.try_get("key_id").map_err(db_err)?,
                    changes: r.try_get("changes").map_err(db_err)?,
                    prev_hash: r.try_get("prev_hash").map_err(db_err)?,
                    hash: r.try_get("hash").map_err(db_err)?,
                })
            })
            .collect()
    }

    async fn write_usage(&self, batch: &[UsageRecord]) -> Result<u64, StoreError> {
        usage::write(&self.pool, batch).await
    }

    async fn usage_buckets(
        &self,
        key_id: Uuid,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        granularity: Granularity,
    ) -> Result<Vec<UsageBucket>, StoreError> {
        usage::buckets(&self.pool, key_id, from, to, granularity).await
    }

    async fn usage_events(&self, q: &UsageQuery) -> Result<Vec<UsageRecord>, StoreError> {
        usage::events(&self.pool, q).await
    }

    async fn prune_usage(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let r = sqlx::query("DELETE FROM usage_events WHERE ts < ?1")
            .bind(micros(before))
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(r.rows_affected())
    }
}

/// How far behind a gateway on an embedded store may be.
const POLL_INTERVAL: Duration = Duration::from_millis(500);
