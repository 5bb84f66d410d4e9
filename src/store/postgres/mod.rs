//! The PostgreSQL backend. Key writes serialise on one advisory lock (taken
//! again by the change trigger), so change numbers commit in order; gateways
//! are woken by LISTEN/NOTIFY.
//!
//! Behind a transaction pooler (`store.pooler = "transaction"`: PgBouncer,
//! RDS Proxy, Supavisor) every statement is prepared unnamed, no session
//! state is used, and LISTEN runs on `store.listen_url` (a direct connection)
//! or not at all: a LISTEN through such a pooler receives nothing.

mod copy;
mod errors;
mod listen;
mod session;
mod usage;

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgSslMode};

use crate::config::Pooler;
use crate::store::sql::{Dialect, Fragments, Inserted, Session, SqlStore, Totals, Value};
use crate::store::{ChangeListener, StoreError};
use crate::usage::UsageRecord;
pub use errors::TlsFailure;
pub(crate) use errors::db_err;
pub use session::PgSession;

/// The key-write lock; the change trigger takes it too.
const LOCK: i64 = 7_120_250_001;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// How to reach Postgres: the URL (with `sslmode`, `sslrootcert`, ...), the
/// pooler in between, and a direct URL for LISTEN and migrations.
#[derive(Clone, Copy)]
pub struct PgSettings<'a> {
    pub url: &'a str,
    pub max_connections: u32,
    pub pooler: Pooler,
    pub listen_url: Option<&'a str>,
}

impl<'a> PgSettings<'a> {
    /// A direct connection with defaults (tests, tools).
    pub fn direct(url: &'a str, max_connections: u32) -> Self {
        PgSettings {
            url,
            max_connections,
            pooler: Pooler::None,
            listen_url: None,
        }
    }
}

pub struct Pg {
    pool: PgPool,
    pooler: Pooler,
    /// Where LISTEN (and migrations) connect: `listen_url`, or the pool's URL
    /// when there is no transaction pooler; `None`: nowhere (poll only).
    direct: Option<PgPool>,
}

/// A Postgres store: the shared SQL over [`Pg`].
pub type PgStore = SqlStore<Pg>;

/// Whether the URL (or `PGSSLROOTCERT`) names a root certificate.
fn names_root_cert(url: &str) -> bool {
    let in_url = url.split_once('?').is_some_and(|(_, query)| {
        query.split('&').any(|pair| {
            let key = pair.split('=').next().unwrap_or(pair);
            matches!(key, "sslrootcert" | "ssl-root-cert" | "ssl-ca")
        })
    });
    in_url || std::env::var_os("PGSSLROOTCERT").is_some()
}

fn options(url: &str, pooler: Pooler) -> Result<PgConnectOptions, StoreError> {
    // The URL may hold a password: the error never echoes it.
    let mut opts = PgConnectOptions::from_str(url)
        .map_err(StoreError::Url)?
        .application_name("keygate");
    // As libpq: `require` with a root certificate verifies the chain
    // (verify-ca); sqlx alone would encrypt without checking it.
    if matches!(opts.get_ssl_mode(), PgSslMode::Require) && names_root_cert(url) {
        opts = opts.ssl_mode(PgSslMode::VerifyCa);
    }
    Ok(match pooler {
        Pooler::None => opts,
        // PgBouncer refuses unknown startup parameters; keygate reads no floats.
        Pooler::Transaction => opts.extra_float_digits(None),
    })
}

/// A pool for the settings; connects lazily, so a gateway can start while
/// the database is down.
pub fn open(s: PgSettings<'_>) -> Result<Pg, StoreError> {
    let opts = options(s.url, s.pooler)?;
    let pool = PgPoolOptions::new()
        .max_connections(s.max_connections)
        .min_connections(0)
        .acquire_timeout(Duration::from_secs(3))
        .connect_lazy_with(opts);
    let direct = match (s.listen_url, s.pooler) {
        (Some(url), _) => Some(
            PgPoolOptions::new()
                .max_connections(2)
                .acquire_timeout(Duration::from_secs(3))
                .connect_lazy_with(options(url, Pooler::None)?),
        ),
        (None, Pooler::None) => Some(pool.clone()),
        (None, Pooler::Transaction) => None,
    };
    Ok(Pg {
        pool,
        pooler: s.pooler,
        direct,
    })
}

impl Pg {
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Named (cached) statements work everywhere but through a transaction pooler.
    fn persistent(&self) -> bool {
        self.pooler == Pooler::None
    }

    async fn transaction(&self) -> Result<PgSession, StoreError> {
        let tx = self.pool.begin().await.map_err(db_err)?;
        Ok(PgSession::tx(tx, self.persistent()))
    }
}

#[async_trait]
impl Dialect for Pg {
    type Session = PgSession;

    const KIND: &'static str = "postgres";

    const FRAGMENTS: Fragments = Fragments {
        has_tag: "($2::text IS NULL OR k.tags @> jsonb_build_array($2::text))",
        head_seq: "SELECT GREATEST((SELECT COALESCE(max(change_seq), 0) FROM api_keys), \
                   (SELECT COALESCE(max(change_seq), 0) FROM api_key_tombstones), \
                   (SELECT COALESCE(max(change_seq), 0) FROM owners), \
                   (SELECT COALESCE(max(change_seq), 0) FROM owner_tombstones)) AS seq",
        bucket_start: "to_timestamp(floor(extract(epoch FROM hour) / $4) * $4)",
        claim_lock: " FOR UPDATE SKIP LOCKED",
    };

    async fn write(&self) -> Result<PgSession, StoreError> {
        let mut tx = self.transaction().await?;
        let lock = vec![Value::Int(Some(LOCK))];
        tx.execute("SELECT pg_advisory_xact_lock($1)", lock).await?;
        Ok(tx)
    }

    async fn read(&self) -> Result<PgSession, StoreError> {
        let mut tx = self.transaction().await?;
        let iso = "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY";
        tx.execute(iso, vec![]).await?;
        Ok(tx)
    }

    async fn begin(&self) -> Result<PgSession, StoreError> {
        self.transaction().await
    }

    async fn conn(&self) -> Result<PgSession, StoreError> {
        let conn = self.pool.acquire().await.map_err(db_err)?;
        Ok(PgSession::pooled(conn, self.persistent()))
    }

    async fn listen(&self) -> Result<Option<Box<dyn ChangeListener>>, StoreError> {
        let Some(direct) = &self.direct else {
            return Ok(None);
        };
        listen::connect(direct, &self.pool, self.persistent()).await
    }

    /// Migrations take a session-level advisory lock: they need a direct
    /// connection, never a transaction pooler.
    async fn migrate(&self) -> Result<(), StoreError> {
        let pool = match (self.pooler, &self.direct) {
            (Pooler::None, _) => &self.pool,
            (Pooler::Transaction, Some(direct)) => direct,
            (Pooler::Transaction, None) => return Err(StoreError::NeedsDirectConnection),
        };
        MIGRATOR
            .run(pool)
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
    ) -> Result<Inserted, StoreError> {
        usage::insert(tx, batch).await
    }

    async fn add_totals(&self, tx: &mut PgSession, totals: &Totals) -> Result<(), StoreError> {
        usage::add_totals(tx, totals).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(url: &str) -> PgSslMode {
        options(url, Pooler::None)
            .map(|o| o.get_ssl_mode())
            .unwrap_or(PgSslMode::Disable)
    }

    #[test]
    fn require_with_a_root_certificate_verifies_the_chain() {
        let base = "postgres://u@db/kg";
        assert!(matches!(
            mode(&format!("{base}?sslmode=require&sslrootcert=/ca.pem")),
            PgSslMode::VerifyCa
        ));
        if std::env::var_os("PGSSLROOTCERT").is_none() {
            assert!(matches!(
                mode(&format!("{base}?sslmode=require")),
                PgSslMode::Require
            ));
        }
        assert!(matches!(
            mode(&format!("{base}?sslmode=verify-full&sslrootcert=/ca.pem")),
            PgSslMode::VerifyFull
        ));
        assert!(matches!(
            mode(&format!("{base}?sslmode=prefer&sslrootcert=/ca.pem")),
            PgSslMode::Prefer
        ));
    }
}
