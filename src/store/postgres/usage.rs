//! Usage records into Postgres: one statement per batch, columns bound as
//! arrays and unnested; rows seen before (by id) are skipped.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use sqlx::Row;
use uuid::Uuid;

use super::{PgSession, db_err};
use crate::store::StoreError;
use crate::store::sql::record_time;
use crate::usage::UsageRecord;

const INSERT: &str = "
INSERT INTO usage_events (id, request_id, ts, key_id, owner_id, route, method, status, outcome,
                          latency_us, upstream_latency_us, bytes_in, bytes_out, client_ip, deprecated_key,
                          credits)
SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::timestamptz[], $4::uuid[], $5::text[], $6::text[],
                     $7::text[], $8::smallint[], $9::text[], $10::bigint[], $11::bigint[], $12::bigint[],
                     $13::bigint[], $14::text[], $15::boolean[], $16::bigint[])
ON CONFLICT (id) DO NOTHING
RETURNING id";

fn col<T>(batch: &[UsageRecord], f: impl Fn(&UsageRecord) -> T) -> Vec<T> {
    batch.iter().map(f).collect()
}

fn big(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

pub(super) async fn insert(
    tx: &mut PgSession,
    batch: &[UsageRecord],
) -> Result<HashSet<Uuid>, StoreError> {
    let ts = batch
        .iter()
        .map(record_time)
        .collect::<Result<Vec<DateTime<Utc>>, _>>()?;
    let text = |f: fn(&UsageRecord) -> Option<&str>| col(batch, |r| f(r).map(str::to_owned));
    let rows = sqlx::query(INSERT)
        .bind(col(batch, |r| r.id))
        .bind(col(batch, |r| r.request_id.clone()))
        .bind(ts)
        .bind(col(batch, |r| r.key_id))
        .bind(text(|r| r.owner_id.as_deref()))
        .bind(text(|r| r.route.as_deref()))
        .bind(col(batch, |r| r.method.clone()))
        .bind(col(batch, |r| i16::try_from(r.status).unwrap_or(i16::MAX)))
        .bind(col(batch, |r| r.outcome.as_str().to_owned()))
        .bind(col(batch, |r| big(r.latency_us)))
        .bind(col(batch, |r| r.upstream_latency_us.map(big)))
        .bind(col(batch, |r| big(r.bytes_in)))
        .bind(col(batch, |r| big(r.bytes_out)))
        .bind(col(batch, |r| r.client_ip.map(|ip| ip.to_string())))
        .bind(col(batch, |r| r.deprecated_key))
        .bind(col(batch, |r| r.credits))
        .persistent(tx.persistent())
        .fetch_all(tx.conn())
        .await
        .map_err(db_err)?;
    rows.iter()
        .map(|r| r.try_get("id").map_err(|e| StoreError::corrupt("id", e)))
        .collect()
}
