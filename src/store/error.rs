//! Store errors: one variant per condition callers tell apart, with the
//! underlying error kept as the source.

use uuid::Uuid;

/// Why a write was refused by the key's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConflictReason {
    Revoked,
    Expired,
    Rotated,
}

impl ConflictReason {
    pub fn status(self) -> &'static str {
        match self {
            ConflictReason::Revoked => "revoked",
            ConflictReason::Expired => "expired",
            ConflictReason::Rotated => "rotated",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("key {0} not found")]
    NotFound(Uuid),
    #[error("owner {0:?} not found")]
    OwnerNotFound(String),
    #[error("webhook delivery {0} not found")]
    DeliveryNotFound(Uuid),
    #[error("owner {0:?} already exists")]
    OwnerExists(String),
    #[error("owner {owner:?} still has {keys} key(s); delete them first")]
    OwnerHasKeys { owner: String, keys: i64 },
    #[error("owner {owner:?} already has {max} live keys (keys.max_per_owner)")]
    OwnerLimit { owner: String, max: u32 },
    #[error("key {id} is {}; {what}", .reason.status())]
    Conflict {
        id: Uuid,
        reason: ConflictReason,
        what: &'static str,
    },
    #[error("database unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    #[error("the database schema is missing or out of date; run `keygate migrate`")]
    Schema(#[source] sqlx::Error),
    #[error("database error: {0}")]
    Database(#[source] sqlx::Error),
    #[error("migrations failed: {0}")]
    Migrate(#[source] sqlx::migrate::MigrateError),
    #[error("invalid database URL in store.url: {0}")]
    Url(#[source] sqlx::Error),
    #[error("cannot create the database directory {path}: {source}")]
    CreateDir {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("TLS to the database failed: {}: {source}", .failure.explain())]
    Tls {
        failure: crate::store::postgres::TlsFailure,
        source: sqlx::Error,
    },
    #[error(
        "store.pooler = \"transaction\": migrations need a direct connection to Postgres (they hold a session lock); set store.listen_url (or KEYGATE_DATABASE_LISTEN_URL) to the database itself"
    )]
    NeedsDirectConnection,
    #[error(
        "LISTEN receives no notifications (a transaction pooler between keygate and Postgres?); key changes arrive by polling every keys.sync_interval; set store.listen_url to a direct connection"
    )]
    DeafListener,
    #[error("stored data is invalid: column {column}: {reason}")]
    Corrupt {
        column: &'static str,
        reason: String,
    },
    #[error("cannot encode a value for the database: {0}")]
    Encode(#[source] serde_json::Error),
}

impl StoreError {
    pub fn is_unavailable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }

    /// A failed migration; a statement's error is classified like any other.
    pub fn migration(
        e: sqlx::migrate::MigrateError,
        classify: fn(sqlx::Error) -> StoreError,
    ) -> StoreError {
        match e {
            sqlx::migrate::MigrateError::Execute(e) => classify(e),
            other => StoreError::Migrate(other),
        }
    }

    /// A column that could not be decoded.
    pub fn corrupt(column: &'static str, e: impl std::fmt::Display) -> StoreError {
        StoreError::Corrupt {
            column,
            reason: e.to_string(),
        }
    }
}
