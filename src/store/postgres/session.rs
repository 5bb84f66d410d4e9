//! Statements on a Postgres connection: [`Value`]s bound natively
//! (`timestamptz`, `jsonb`, `uuid`, `bytea`).

use chrono::{DateTime, Utc};
use sqlx::Postgres;
use sqlx::postgres::{PgArguments, PgConnection, PgRow};
use sqlx::query::Query;
use sqlx::types::Json;

use super::db_err;
use crate::store::StoreError;
use crate::store::sql::Value;
use crate::store::sql::session::sqlx_session;

fn bind(q: Query<'_, Postgres, PgArguments>, v: Value) -> Query<'_, Postgres, PgArguments> {
    match v {
        Value::Bool(v) => q.bind(v),
        Value::Int(v) => q.bind(v),
        Value::Text(v) => q.bind(v),
        Value::Bytes(v) => q.bind(v),
        Value::Uuid(v) => q.bind(v),
        Value::Time(v) => q.bind(v),
        Value::Json(v) => q.bind(v.map(Json)),
    }
}

fn read_time(row: &PgRow, col: &'static str) -> Result<Option<DateTime<Utc>>, StoreError> {
    get(row, col)
}

sqlx_session!(
    PgSession,
    Postgres,
    PgConnection,
    PgRow,
    PgArguments,
    bind,
    read_time
);
