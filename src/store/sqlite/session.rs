//! Statements on a SQLite connection: times as Unix microseconds (INTEGER),
//! ids as 16-byte BLOBs, lists and objects as JSON text.

use chrono::{DateTime, Utc};
use sqlx::Sqlite;
use sqlx::query::Query;
use sqlx::sqlite::{SqliteArguments, SqliteConnection, SqliteRow};

use super::db_err;
use crate::store::StoreError;
use crate::store::sql::Value;
use crate::store::sql::session::sqlx_session;

fn bind(q: Query<'_, Sqlite, SqliteArguments>, v: Value) -> Query<'_, Sqlite, SqliteArguments> {
    match v {
        Value::Bool(v) => q.bind(v),
        Value::Int(v) => q.bind(v),
        Value::Text(v) => q.bind(v),
        Value::Bytes(v) => q.bind(v),
        Value::Uuid(v) => q.bind(v),
        Value::Time(v) => q.bind(v.map(|t| t.timestamp_micros())),
        Value::Json(v) => q.bind(v.map(|j| j.to_string())),
    }
}

/// Stored as Unix microseconds; a value out of chrono's range is corrupt,
/// never a silent 1970.
fn read_time(row: &SqliteRow, col: &'static str) -> Result<Option<DateTime<Utc>>, StoreError> {
    get::<Option<i64>>(row, col)?
        .map(|us| {
            DateTime::from_timestamp_micros(us)
                .ok_or_else(|| StoreError::corrupt(col, format!("{us} µs is not a time")))
        })
        .transpose()
}

sqlx_session!(
    SqliteSession,
    Sqlite,
    SqliteConnection,
    SqliteRow,
    SqliteArguments,
    bind,
    read_time
);
