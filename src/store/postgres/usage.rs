//! Usage records in Postgres: one statement per batch inserts the new rows,
//! rolls them up per hour, and adds them to the keys' use counts.

use chrono::{DateTime, Utc};
use sqlx::Row;
use sqlx::postgres::PgPool;
use uuid::Uuid;

use super::db_err;
use crate::outcome::Outcome;
use crate::store::{Granularity, StoreError, UsageBucket, UsageQuery};
use crate::usage::UsageRecord;

const WRITE: &str = "
WITH ins AS (
    INSERT INTO usage_events (id, request_id, ts, key_id, owner_id, route, method, status, outcome,
                              latency_us, upstream_latency_us, bytes_in, bytes_out, client_ip, deprecated_key)
    SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::timestamptz[], $4::uuid[], $5::text[], $6::text[],
                         $7::text[], $8::smallint[], $9::text[], $10::bigint[], $11::bigint[], $12::bigint[],
                         $13::bigint[], $14::text[], $15::boolean[])
    ON CONFLICT (id) DO NOTHING
    RETURNING key_id, ts, route, outcome, latency_us, bytes_in, bytes_out
), rollup AS (
    INSERT INTO usage_hourly AS h (key_id, hour, route, outcome, requests, latency_us_sum, latency_us_max, bytes_in, bytes_out)
    SELECT COALESCE(key_id, '00000000-0000-0000-0000-000000000000'), date_trunc('hour', ts, 'UTC'),
           COALESCE(route, ''), outcome, count(*), sum(latency_us), max(latency_us), sum(bytes_in), sum(bytes_out)
    FROM ins GROUP BY 1, 2, 3, 4
    ON CONFLICT (key_id, hour, route, outcome) DO UPDATE SET
        requests = h.requests + excluded.requests,
        latency_us_sum = h.latency_us_sum + excluded.latency_us_sum,
        latency_us_max = GREATEST(h.latency_us_max, excluded.latency_us_max),
        bytes_in = h.bytes_in + excluded.bytes_in,
        bytes_out = h.bytes_out + excluded.bytes_out
), counts AS (
    UPDATE api_key_usage u SET use_count = u.use_count + c.n,
        last_used_at = GREATEST(u.last_used_at, c.last)
    FROM (SELECT key_id, count(*) AS n, max(ts) AS last FROM ins WHERE key_id IS NOT NULL GROUP BY key_id) c
    WHERE u.key_id = c.key_id
)
SELECT count(*) FROM ins";

fn at(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

pub async fn write(pool: &PgPool, batch: &[UsageRecord]) -> Result<u64, StoreError> {
    if batch.is_empty() {
        return Ok(0);
    }
    let col = |f: &dyn Fn(&UsageRecord) -> Option<String>| batch.iter().map(f).collect::<Vec<_>>();
    let inserted: i64 = sqlx::query_scalar(WRITE)
        .bind(batch.iter().map(|r| r.id).collect::<Vec<_>>())
        .bind(
            batch
                .iter()
                .map(|r| r.request_id.clone())
                .collect::<Vec<_>>(),
        )
        .bind(batch.iter().map(|r| at(r.ts_ms)).collect::<Vec<_>>())
        .bind(batch.iter().map(|r| r.key_id).collect::<Vec<_>>())
        .bind(col(&|r| r.owner_id.as_deref().map(str::to_owned)))
        .bind(col(&|r| r.route.as_deref().map(str::to_owned)))
        .bind(batch.iter().map(|r| r.method.clone()).collect::<Vec<_>>())
        .bind(batch.iter().map(|r| r.status as i16).collect::<Vec<_>>())
        .bind(
            batch
                .iter()
                .map(|r| r.outcome.as_str().to_owned())
                .collect::<Vec<_>>(),
        )
        .bind(
            batch
                .iter()
                .map(|r| r.latency_us as i64)
                .collect::<Vec<_>>(),
        )
        .bind(
            batch
                .iter()
                .map(|r| r.upstream_latency_us.map(|v| v as i64))
                .collect::<Vec<_>>(),
        )
        .bind(batch.iter().map(|r| r.bytes_in as i64).collect::<Vec<_>>())
        .bind(batch.iter().map(|r| r.bytes_out as i64).collect::<Vec<_>>())
        .bind(col(&|r| r.client_ip.map(|ip| ip.to_string())))
        .bind(batch.iter().map(|r| r.deprecated_key).collect::<Vec<_>>())
        .fetch_one(pool)
        .await
        .map_err(db_err)?;
    Ok(inserted.max(0) as u64)
}

pub async fn buckets(
    pool: &PgPool,
    key_id: Uuid,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    g: Granularity,
) -> Result<Vec<UsageBucket>, StoreError> {
    let rows = sqlx::query(
        "SELECT date_trunc($4, hour, 'UTC') AS start, outcome, sum(requests)::bigint AS requests, \
         (sum(latency_us_sum) / GREATEST(sum(requests), 1))::bigint AS avg, max(latency_us_max) AS max, \
         sum(bytes_in)::bigint AS bytes_in, sum(bytes_out)::bigint AS bytes_out \
         FROM usage_hourly WHERE key_id = $1 AND hour >= $2 AND hour < $3 GROUP BY 1, 2 ORDER BY 1, 2",
    )
    .bind(key_id)
    .bind(from)
    .bind(to)
    .bind(g.as_str())
    .fetch_all(pool)
    .await
    .map_err(db_err)?;
    rows.iter()
        .map(|r| {
            Ok(UsageBucket {
                start: r.try_get("start").map_err(db_err)?,
                outcome: r.try_get("outcome").map_err(db_err)?,
                requests: r.try_get("requests").map_err(db_err)?,
                latency_us_avg: r.try_get("avg").map_err(db_err)?,
                latency_us_max: r.try_get("max").map_err(db_err)?,
                bytes_in: r.try_get("bytes_in").map_err(db_err)?,
                bytes_out: r.try_get("bytes_out").map_err(db_err)?,
            })
        })
        .collect()
}

pub async fn prune(pool: &PgPool, before: DateTime<Utc>) -> Result<u64, StoreError> {
    let r = sqlx::query("DELETE FROM usage_events WHERE ts < $1")
        .bind(before)
        .execute(pool)
        .await
        .map_err(db_err)?;
    Ok(r.rows_affected())
}

pub async fn events(pool: &PgPool, q: &UsageQuery) -> Result<Vec<UsageRecord>, StoreError> {
    let rows = sqlx::query(
        "SELECT id, request_id, ts, key_id, owner_id, route, method, status, outcome, latency_us, upstream_latency_us, \
         bytes_in, bytes_out, client_ip, deprecated_key FROM usage_events \
         WHERE ($1::uuid IS NULL OR key_id = $1) AND ($2::uuid IS NULL OR id > $2) ORDER BY id LIMIT $3",
    )
    .bind(q.key_id)
    .bind(q.after)
    .bind(i64::from(q.limit))
    .fetch_all(pool)
    .await
    .map_err(db_err)?;
    rows.iter()
        .map(|r| {
            let g = |e: sqlx::Error| StoreError::Corrupt(e.to_string());
            let outcome: String = r.try_get("outcome").map_err(g)?;
            Ok(UsageRecord {
                id: r.try_get("id").map_err(g)?,
                request_id: r.try_get("request_id").map_err(g)?,
                ts_ms: r
                    .try_get::<DateTime<Utc>, _>("ts")
                    .map_err(g)?
                    .timestamp_millis(),
                key_id: r.try_get("key_id").map_err(g)?,
                owner_id: r
                    .try_get::<Option<String>, _>("owner_id")
                    .map_err(g)?
                    .map(Into::into),
                route: r
                    .try_get::<Option<String>, _>("route")
                    .map_err(g)?
                    .map(Into::into),
                method: r.try_get("method").map_err(g)?,
                status: r.try_get::<i16, _>("status").map_err(g)? as u16,
                outcome: Outcome::parse(&outcome)
                    .ok_or_else(|| StoreError::Corrupt(format!("outcome {outcome:?}")))?,
                latency_us: r.try_get::<i64, _>("latency_us").map_err(g)? as u64,
                upstream_latency_us: r
                    .try_get::<Option<i64>, _>("upstream_latency_us")
                    .map_err(g)?
                    .map(|v| v as u64),
                bytes_in: r.try_get::<i64, _>("bytes_in").map_err(g)? as u64,
                bytes_out: r.try_get::<i64, _>("bytes_out").map_err(g)? as u64,
                client_ip: r
                    .try_get::<Option<String>, _>("client_ip")
                    .map_err(g)?
                    .and_then(|s| s.parse().ok()),
                deprecated_key: r.try_get("deprecated_key").map_err(g)?,
            })
        })
        .collect()
}
