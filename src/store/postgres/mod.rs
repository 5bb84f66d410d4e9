//! The PostgreSQL backend. Key writes serialise on one advisory lock (taken
//! again by the change trigger), so change numbers commit in order; gateways
//! are woken by LISTEN/NOTIFY.

mod session;
mod usage;

use std::collections::HashSet;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions};
use uuid::Uuid;

use crate::store::sql::{Dialect, Fragments, Session, SqlStore, Value};
use crate::store::{ChangeListener, StoreError};
use crate::usage::UsageRecord;
pub use session::PgSession;

/// The key-write lock; the change trigger takes it too.
const LOCK: i64 = 7_120_250_001;
const CHANNEL: &str = "keygate_keys";

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

pub struct Pg {
    pool: PgPool,
}

/// A Postgres store: the shared SQL over [`Pg`].
pub type PgStore = SqlStore<Pg>;

/// Classifies a driver error: down, schema missing, or anything else.
pub(crate) fn db_err(e: sqlx::Error) -> StoreError {
    // SQLSTATE classes: 42P01 undefined table, 42703 undefined column, 42883
    // undefined function; 57P0x shutdown/crash, 53300 too many connections.
    let code = match &e {
        sqlx::Error::Database(d) => d.code().map(|c| c.into_owned()),
        _ => None,
    };
    match (&e, code.as_deref()) {
        (
            sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed
            | sqlx::Error::Tls(_),
            _,
        ) => StoreError::Unavailable(e),
        (_, Some("42P01" | "42703" | "42883")) => StoreError::Schema(e),
        (_, Some("57P01" | "57P02" | "57P03" | "53300")) => StoreError::Unavailable(e),
        _ => StoreError::Database(e),
    }
}

/// A pool for `url`; connects lazily, so a gateway can start while the
/// database is down. The URL may hold a password: errors never echo it.
pub fn open(url: &str, max_connections: u32) -> Result<Pg, StoreError> {
    let opts = PgConnectOptions::from_str(url)
        .map_err(StoreError::Url)?
        .application_name("keygate");
    let pool = PgPoolOptions::new()
        .max_connections(max_connections)
        .min_connections(0)
        .acquire_timeout(Duration::from_secs(3))
        .connect_lazy_with(opts);
    Ok(Pg { pool })
}

impl Pg {
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    async fn transaction(&self) -> Result<PgSession, StoreError> {
        Ok(PgSession::Tx(self.pool.begin().await.map_err(db_err)?))
    }
}

#[async_trait]
impl Dialect for Pg {
    type Session = PgSession;

    const KIND: &'static str = "postgres";

    const FRAGMENTS: Fragments = Fragments {
        has_tag: "($2::text IS NULL OR k.tags @> jsonb_build_array($2::text))",
        head_seq: "SELECT GREATEST((SELECT COALESCE(max(change_seq), 0) FROM api_keys), \
                   (SELECT COALESCE(max(change_seq), 0) FROM api_key_tombstones)) AS seq",
        bucket_start: "to_timestamp(floor(extract(epoch FROM hour) / $4) * $4)",
    };

    async fn write(&self) -> Result<PgSession, StoreError> {
        let mut tx = self.transaction().await?;
        tx.execute(
            "SELECT pg_advisory_xact_lock($1)",
            vec![Value::Int(Some(LOCK))],
        )
        .await?;
        Ok(tx)
    }

    async fn read(&self) -> Result<PgSession, StoreError> {
        let mut tx = self.transaction().await?;
        tx.execute(
            "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY",
            vec![],
        )
        .await?;
        Ok(tx)
    }

    async fn begin(&self) -> Result<PgSession, StoreError> {
        self.transaction().await
    }

    async fn conn(&self) -> Result<PgSession, StoreError> {
        Ok(PgSession::Conn(self.pool.acquire().await.map_err(db_err)?))
    }

    async fn listen(&self) -> Result<Option<Box<dyn ChangeListener>>, StoreError> {
        let mut l = PgListener::connect_with(&self.pool).await.map_err(db_err)?;
        l.listen(CHANNEL).await.map_err(db_err)?;
        Ok(Some(Box::new(PgChanges(l))))
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        MIGRATOR
            .run(&self.pool)
            .await
            .map_err(|e| StoreError::migration(e, db_err))
    }

    fn poll_interval(&self) -> Option<Duration> {
        None
    }

    async fn insert_usage(
        &self,
        tx: &mut PgSession,
        batch: &[UsageRecord],
    ) -> Result<HashSet<Uuid>, StoreError> {
        usage::insert(tx, batch).await
    }
}

struct PgChanges(PgListener);

#[async_trait]
impl ChangeListener for PgChanges {
    async fn next(&mut self) -> Result<bool, StoreError> {
        match self.0.try_recv().await {
            Ok(Some(_)) => Ok(true),
            Ok(None) => Ok(false),
            Err(e) => Err(db_err(e)),
        }
    }
}
