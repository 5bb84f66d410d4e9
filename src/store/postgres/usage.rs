//! Usage records into Postgres. A batch goes first as one binary `COPY` (the
//! cheapest bulk path, for the server and for this process). `COPY` cannot
//! skip rows: if any record was written before (a journal or spool replay, a
//! retry after a lost commit), it fails on the primary key as a whole, and
//! the batch is rolled back to a savepoint and written again by the
//! idempotent statement: columns bound as arrays and unnested, rows seen
//! before (by id) skipped. Either way the caller learns which records are new.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use sqlx::Row;
use uuid::Uuid;

use super::{PgSession, db_err};
use crate::store::StoreError;
use crate::store::sql::record_time;
use crate::store::sql::{Inserted, Rollup, Session, Totals, write_rows};
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

/// A count as Postgres's `bigint`, saturating.
pub(super) fn big(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

const COPY_SAVEPOINT: &str = "SAVEPOINT usage_copy";
const COPY_UNDO: &str = "ROLLBACK TO SAVEPOINT usage_copy";

/// Writes `batch` in `tx`, and says which of its records were new.
pub(super) async fn insert(
    tx: &mut PgSession,
    batch: &[UsageRecord],
) -> Result<Inserted, StoreError> {
    let data = super::copy::encode(batch)?;
    tx.execute(COPY_SAVEPOINT, Vec::new()).await?;
    match copy(tx, data).await {
        Ok(()) => Ok(Inserted::All),
        Err(e) if is_unique_violation(&e) => {
            tx.execute(COPY_UNDO, Vec::new()).await?;
            insert_new(tx, batch).await.map(Inserted::Only)
        }
        Err(e) => Err(db_err(e)),
    }
}

async fn copy(tx: &mut PgSession, data: Vec<u8>) -> Result<(), sqlx::Error> {
    let mut c = tx.conn().copy_in_raw(super::copy::STATEMENT).await?;
    let sent = c.send(data).await.map(drop);
    if let Err(e) = sent {
        // The connection is unusable until the copy ends; the send's error says why.
        let _ = c.abort("keygate: usage copy failed").await;
        return Err(e);
    }
    c.finish().await.map(drop)
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.code().as_deref() == Some("23505"))
}

/// The idempotent path: inserts the records not written before.
async fn insert_new(
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

/// A batch's rollups in one statement: the rows as arrays, unnested (each
/// row once: the batch's rows are distinct).
const ADD_ROLLUPS: &str = crate::store::sql::upsert_rollup!(
    "SELECT * FROM UNNEST($1::uuid[], $2::timestamptz[], $3::text[], $4::text[], $5::bigint[], \
     $6::bigint[], $7::bigint[], $8::bigint[], $9::bigint[], $10::bigint[])"
);
/// The keys' uses in one statement.
const ADD_USES: &str = "UPDATE api_key_usage AS u SET use_count = u.use_count + v.n, \
     last_used_at = CASE WHEN u.last_used_at IS NULL OR u.last_used_at < v.last THEN v.last \
     ELSE u.last_used_at END \
     FROM UNNEST($1::uuid[], $2::bigint[], $3::timestamptz[]) AS v(key_id, n, last) \
     WHERE u.key_id = v.key_id";

/// Below this many rows a batch's rollups and uses go one statement per row:
/// with one busy key (two rows) the array statements cost Postgres more
/// (`examples/usage_cost`, one key: 14.0–15.3 against 12.3–13.3 µs per
/// record); with many keys one statement per kind instead of two per key is
/// what counts (the benchmark's full-keys row). The crossover in between was
/// not measured.
const BULK_FROM: usize = 8;

/// Rollups and uses in two statements, however many keys the batch has (one
/// per row when there are few).
pub(super) async fn add_totals(tx: &mut PgSession, totals: &Totals) -> Result<(), StoreError> {
    let rows = totals.rollups();
    let uses = totals.uses();
    if rows.len() + uses.len() < BULK_FROM {
        return write_rows(tx, &rows, &uses).await;
    }
    if !rows.is_empty() {
        let num = |f: fn(&Rollup) -> i64| rows.iter().map(|(_, r)| f(r)).collect::<Vec<i64>>();
        sqlx::query(ADD_ROLLUPS)
            .bind(rows.iter().map(|(k, _)| k.0).collect::<Vec<Uuid>>())
            .bind(
                rows.iter()
                    .map(|(k, _)| k.1)
                    .collect::<Vec<DateTime<Utc>>>(),
            )
            .bind(
                rows.iter()
                    .map(|(k, _)| k.2.as_deref().unwrap_or(""))
                    .collect::<Vec<&str>>(),
            )
            .bind(
                rows.iter()
                    .map(|(k, _)| k.3.as_str())
                    .collect::<Vec<&str>>(),
            )
            .bind(num(|r| r.requests))
            .bind(num(|r| r.latency_sum))
            .bind(num(|r| r.latency_max))
            .bind(num(|r| r.bytes_in))
            .bind(num(|r| r.bytes_out))
            .bind(num(|r| r.credits))
            .persistent(tx.persistent())
            .execute(tx.conn())
            .await
            .map_err(db_err)?;
    }
    if !uses.is_empty() {
        sqlx::query(ADD_USES)
            .bind(uses.iter().map(|u| u.key_id).collect::<Vec<Uuid>>())
            .bind(uses.iter().map(|u| u.count).collect::<Vec<i64>>())
            .bind(uses.iter().map(|u| u.last).collect::<Vec<DateTime<Utc>>>())
            .persistent(tx.persistent())
            .execute(tx.conn())
            .await
            .map_err(db_err)?;
    }
    Ok(())
}
