//! The embedded SQLite backend: the same capabilities as Postgres. Write
//! transactions take SQLite's write lock up front (`BEGIN IMMEDIATE`);
//! triggers number every key change, and gateways poll for changes (SQLite has
//! no LISTEN/NOTIFY).

mod session;
mod usage;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use crate::store::sql::{Dialect, Fragments, Inserted, SqlStore};
use crate::store::{ChangeListener, StoreError};
use crate::usage::UsageRecord;
pub use session::SqliteSession;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// How far behind a gateway on an embedded store may be.
const POLL_INTERVAL: Duration = Duration::from_millis(500);

pub struct Sqlite {
    pool: SqlitePool,
}

/// An embedded store: the shared SQL over [`Sqlite`].
pub type SqliteStore = SqlStore<Sqlite>;

/// Classifies a driver error by SQLite's result code (the low byte of the
/// extended code): busy, locked, cannot open, I/O error or disk full mean the
/// database cannot answer now; everything else is an error in itself.
pub(crate) fn db_err(e: sqlx::Error) -> StoreError {
    const BUSY: i64 = 5;
    const LOCKED: i64 = 6;
    const IOERR: i64 = 10;
    const FULL: i64 = 13;
    const CANTOPEN: i64 = 14;
    let primary = match &e {
        sqlx::Error::Database(d) => d
            .code()
            .and_then(|c| c.parse::<i64>().ok())
            .map(|c| c & 0xff),
        _ => None,
    };
    match (&e, primary) {
        (
            sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed,
            _,
        ) => StoreError::Unavailable(e),
        (_, Some(BUSY | LOCKED | IOERR | FULL | CANTOPEN)) => StoreError::Unavailable(e),
        _ => StoreError::Database(e),
    }
}

/// Opens (creating the file and its directory if needed) and migrates.
pub async fn open(path: &Path) -> Result<Sqlite, StoreError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
            path: dir.to_owned(),
            source,
        })?;
    }
    let opts = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))
        .map_err(StoreError::Url)?
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
    let store = Sqlite { pool };
    Dialect::migrate(&store).await?;
    Ok(store)
}

impl Sqlite {
    async fn begin_with(&self, sql: &'static str) -> Result<SqliteSession, StoreError> {
        let tx = self.pool.begin_with(sql).await.map_err(db_err)?;
        Ok(SqliteSession::tx(tx, true))
    }
}

#[async_trait]
impl Dialect for Sqlite {
    type Session = SqliteSession;

    const KIND: &'static str = "sqlite";

    const FRAGMENTS: Fragments = Fragments {
        has_tag: "($2 IS NULL OR EXISTS (SELECT 1 FROM json_each(k.tags) WHERE value = $2))",
        head_seq: "SELECT seq FROM key_change_seq WHERE id = 1",
        bucket_start: "hour - (hour % ($4 * 1000000))",
        claim_lock: "",
    };

    /// SQLite has one writer at a time: taking its lock up front orders writes.
    async fn write(&self) -> Result<SqliteSession, StoreError> {
        self.begin_with("BEGIN IMMEDIATE").await
    }

    /// A deferred transaction reads one snapshot (WAL mode).
    async fn read(&self) -> Result<SqliteSession, StoreError> {
        self.begin_with("BEGIN").await
    }

    async fn begin(&self) -> Result<SqliteSession, StoreError> {
        self.begin_with("BEGIN IMMEDIATE").await
    }

    async fn conn(&self) -> Result<SqliteSession, StoreError> {
        let conn = self.pool.acquire().await.map_err(db_err)?;
        Ok(SqliteSession::pooled(conn, true))
    }

    async fn insert_usage(
        &self,
        tx: &mut SqliteSession,
        batch: &[UsageRecord],
    ) -> Result<Inserted, StoreError> {
        usage::insert(tx, batch).await.map(Inserted::Only)
    }

    async fn listen(&self) -> Result<Option<Box<dyn ChangeListener>>, StoreError> {
        Ok(None)
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        MIGRATOR
            .run(&self.pool)
            .await
            .map_err(|e| StoreError::migration(e, db_err))
    }

    fn poll_interval(&self) -> Option<Duration> {
        Some(POLL_INTERVAL)
    }
}
