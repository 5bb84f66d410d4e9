//! Usage records in SQLite: one transaction per batch; rows new by id are
//! rolled up hourly and added to the keys' use counts.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::Row;
use sqlx::sqlite::SqlitePool;
use uuid::Uuid;

use super::{db_err, micros, time};
use crate::outcome::Outcome;
use crate::store::{Granularity, StoreError, UsageBucket, UsageQuery};
use crate::usage::UsageRecord;

const HOUR_US: i64 = 3_600_000_000;
const DAY_US: i64 = 24 * HOUR_US;

#[derive(Default)]
struct Rollup {
    requests: i64,
    latency_sum: i64,
    latency_max: i64,
    bytes_in: i64,
    bytes_out: i64,
}

pub async fn write(pool: &SqlitePool, batch: &[UsageRecord]) -> Result<u64, StoreError> {
    if batch.is_empty() {
        return Ok(0);
    }
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await.map_err(db_err)?;
    let mut rollups: HashMap<(Uuid, i64, String, &'static str), Rollup> = HashMap::new();
    let mut uses: HashMap<Uuid, (i64, i64)> = HashMap::new();
    let mut inserted = 0u64;
    for r in batch {
        let ts = r.ts_ms.saturating_mul(1000);
        let done = sqlx::query(
            "INSERT OR IGNORE INTO usage_events (id, request_id, ts, key_id, owner_id, route, method, status, outcome, \
             latency_us, upstream_latency_us, bytes_in, bytes_out, client_ip, deprecated_key) \
             VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15)",
        )
        .bind(r.id)
        .bind(&r.request_id)
        .bind(ts)
        .bind(r.key_id)
        .bind(r.owner_id.as_deref())
        .bind(r.route.as_deref())
        .bind(&r.method)
        .bind(i64::from(r.status))
        .bind(r.outcome.as_str())
        .bind(r.latency_us as i64)
        .bind(r.upstream_latency_us.map(|v| v as i64))
        .bind(r.bytes_in as i64)
        .bind(r.bytes_out as i64)
        .bind(r.client_ip.map(|ip| ip.to_string()))
        .bind(r.deprecated_key)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        if done.rows_affected() == 0 {
            continue; // seen before: a replay
        }
        inserted += 1;
        let key = (
            r.key_id.unwrap_or(Uuid::nil()),
            ts - ts.rem_euclid(HOUR_US),
            r.route.as_deref().unwrap_or("").to_owned(),
            r.outcome.as_str(),
        );
        let roll = rollups.entry(key).or_default();
        roll.requests += 1;
        roll.latency_sum += r.latency_us as i64;
        roll.latency_max = roll.latency_max.max(r.latency_us as i64);
        roll.bytes_in += r.bytes_in as i64;
        roll.bytes_out += r.bytes_out as i64;
        if let Some(k) = r.key_id {
            let u = uses.entry(k).or_insert((0, i64::MIN));
            u.0 += 1;
            u.1 = u.1.max(ts);
        }
    }
    for ((key_id, hour, route, outcome), r) in rollups {
        sqlx::query(
            "INSERT INTO usage_hourly (key_id, hour, route, outcome, requests, latency_us_sum, latency_us_max, bytes_in, bytes_out) \
             VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9) ON CONFLICT (key_id, hour, route, outcome) DO UPDATE SET \
             requests = requests + excluded.requests, latency_us_sum = latency_us_sum + excluded.latency_us_sum, \
             latency_us_max = MAX(latency_us_max, excluded.latency_us_max), bytes_in = bytes_in + excluded.bytes_in, \
             bytes_out = bytes_out + excluded.bytes_out",
        )
        .bind(key_id)
        .bind(hour)
        .bind(route)
        .bind(outcome)
        .bind(r.requests)
        .bind(r.latency_sum)
        .bind(r.latency_max)
        .bind(r.bytes_in)
        .bind(r.bytes_out)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
    }
    for (key_id, (n, last)) in uses {
        sqlx::query("UPDATE api_key_usage SET use_count = use_count + ?2, last_used_at = MAX(COALESCE(last_used_at, 0), ?3) WHERE key_id = ?1")
            .bind(key_id)
            .bind(n)
            .bind(last)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
    }
    tx.commit().await.map_err(db_err)?;
    Ok(inserted)
}

pub async fn buckets(
    pool: &SqlitePool,
    key_id: Uuid,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    g: Granularity,
) -> Result<Vec<UsageBucket>, StoreError> {
    let width = match g {
        Granularity::Hour => HOUR_US,
        Granularity::Day => DAY_US,
    };
    let rows = sqlx::query(
        "SELECT hour - (hour % ?4) AS start, outcome, sum(requests) AS requests, sum(latency_us_sum) / MAX(sum(requests), 1) AS avg, \
         max(latency_us_max) AS max, sum(bytes_in) AS bytes_in, sum(bytes_out) AS bytes_out \
         FROM usage_hourly WHERE key_id = ?1 AND hour >= ?2 AND hour < ?3 GROUP BY 1, 2 ORDER BY 1, 2",
    )
    .bind(key_id)
    .bind(micros(from))
    .bind(micros(to))
    .bind(width)
    .fetch_all(pool)
    .await
    .map_err(db_err)?;
    rows.iter()
        .map(|r| {
            Ok(UsageBucket {
                start: time(r.try_get("start").map_err(db_err)?),
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

pub async fn events(pool: &SqlitePool, q: &UsageQuery) -> Result<Vec<UsageRecord>, StoreError> {
    let rows = sqlx::query(
        "SELECT id, request_id, ts, key_id, owner_id, route, method, status, outcome, latency_us, upstream_latency_us, \
         bytes_in, bytes_out, client_ip, deprecated_key FROM usage_events \
         WHERE (?1 IS NULL OR key_id = ?1) AND (?2 IS NULL OR id > ?2) ORDER BY id LIMIT ?3",
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
                ts_ms: r.try_get::<i64, _>("ts").map_err(g)? / 1000,
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
                status: r.try_get::<i64, _>("status").map_err(g)? as u16,
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
