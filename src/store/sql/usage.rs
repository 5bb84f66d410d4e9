//! Usage records: a backend inserts a batch in bulk and says which records
//! were new (by id); the hourly rollups and the keys' use counts are computed
//! here from the new ones only, so replaying a batch never counts it twice.

use std::collections::HashSet;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::totals::Totals;
use super::{Dialect, Session, SqlRow, SqlStore, Value};
use crate::outcome::Outcome;
use crate::store::{Granularity, StoreError, UsageBucket, UsageQuery, UsageStore, UsageSubject};
use crate::usage::UsageRecord;

const EVENTS: &str = "SELECT id, request_id, ts, key_id, owner_id, route, method, \
     CAST(status AS BIGINT) AS status, outcome, latency_us, upstream_latency_us, bytes_in, bytes_out, \
     client_ip, deprecated_key, credits FROM usage_events \
     WHERE ($1 IS NULL OR key_id = $1) AND ($2 IS NULL OR id > $2) ORDER BY id LIMIT $3";
const PRUNE: &str = "DELETE FROM usage_events WHERE ts < $1";

/// A record's time, which keygate's own clock produced.
pub fn record_time(r: &UsageRecord) -> Result<DateTime<Utc>, StoreError> {
    DateTime::from_timestamp_millis(r.ts_ms).ok_or(StoreError::Corrupt {
        column: "ts",
        reason: format!("{} ms is not a representable time", r.ts_ms),
    })
}

/// Which records of a batch a backend stored (the others were stored before).
pub enum Inserted {
    /// Every one.
    All,
    /// Those with these ids.
    Only(HashSet<Uuid>),
}

impl Inserted {
    fn has(&self, id: &Uuid) -> bool {
        match self {
            Inserted::All => true,
            Inserted::Only(ids) => ids.contains(id),
        }
    }

    fn count(&self, batch: &[UsageRecord]) -> u64 {
        match self {
            Inserted::All => batch.len() as u64,
            Inserted::Only(ids) => ids.len() as u64,
        }
    }
}

fn unsigned(row: &impl SqlRow, col: &'static str) -> Result<u64, StoreError> {
    let v: i64 = row.get(col)?;
    u64::try_from(v).map_err(|e| StoreError::corrupt(col, e))
}

fn event(r: &impl SqlRow) -> Result<UsageRecord, StoreError> {
    let outcome: String = r.get("outcome")?;
    let status: i64 = r.get("status")?;
    let ip: Option<String> = r.get("client_ip")?;
    Ok(UsageRecord {
        id: r.get("id")?,
        request_id: r.get("request_id")?,
        ts_ms: r.get::<DateTime<Utc>>("ts")?.timestamp_millis(),
        key_id: r.get("key_id")?,
        owner_id: r.get::<Option<String>>("owner_id")?.map(Into::into),
        route: r.get::<Option<String>>("route")?.map(Into::into),
        method: r.get("method")?,
        status: u16::try_from(status).map_err(|e| StoreError::corrupt("status", e))?,
        outcome: Outcome::parse(&outcome).ok_or_else(|| {
            StoreError::corrupt("outcome", format!("unknown outcome {outcome:?}"))
        })?,
        latency_us: unsigned(r, "latency_us")?,
        upstream_latency_us: r
            .get::<Option<i64>>("upstream_latency_us")?
            .map(|v| u64::try_from(v).unwrap_or(0)),
        bytes_in: unsigned(r, "bytes_in")?,
        bytes_out: unsigned(r, "bytes_out")?,
        client_ip: ip
            .map(|s| s.parse().map_err(|e| StoreError::corrupt("client_ip", e)))
            .transpose()?,
        deprecated_key: r.get("deprecated_key")?,
        credits: r.get("credits")?,
        charged_to: None,
    })
}

fn bucket(r: &impl SqlRow) -> Result<UsageBucket, StoreError> {
    Ok(UsageBucket {
        start: r.get("start")?,
        outcome: r.get("outcome")?,
        requests: r.get("requests")?,
        latency_us_avg: r.get("avg")?,
        latency_us_max: r.get("max")?,
        bytes_in: r.get("bytes_in")?,
        bytes_out: r.get("bytes_out")?,
        credits: r.get("credits")?,
    })
}

/// A report about one key: `$1` is its id.
pub(super) const KEY_SUBJECT: &str = "key_id = $1";
/// A report about an owner: `$1` is its id; its keys' rollups.
pub(super) const OWNER_SUBJECT: &str = "key_id IN (SELECT id FROM api_keys WHERE owner_id = $1)";

/// The rollups of `subject` in `[$2, $3)`, by buckets of `$4` seconds; the
/// bucket start expression is the dialect's.
pub(super) fn buckets_sql(bucket_start: &str, subject: &str) -> String {
    format!(
        "SELECT {bucket_start} AS start, outcome, CAST(sum(requests) AS BIGINT) AS requests, \
         CAST(CASE WHEN sum(requests) > 0 THEN sum(latency_us_sum) / sum(requests) ELSE 0 END AS BIGINT) AS avg, \
         max(latency_us_max) AS max, CAST(sum(bytes_in) AS BIGINT) AS bytes_in, \
         CAST(sum(bytes_out) AS BIGINT) AS bytes_out, CAST(sum(credits) AS BIGINT) AS credits \
         FROM usage_hourly WHERE {subject} AND hour >= $2 AND hour < $3 GROUP BY 1, 2 ORDER BY 1, 2"
    )
}

#[async_trait]
impl<D: Dialect> UsageStore for SqlStore<D> {
    async fn write_usage(&self, batch: &[UsageRecord]) -> Result<u64, StoreError> {
        if batch.is_empty() {
            return Ok(0);
        }
        let mut tx = self.d.begin().await?;
        let new = self.d.insert_usage(&mut tx, batch).await?;
        let mut totals = Totals::default();
        for r in batch.iter().filter(|r| new.has(&r.id)) {
            totals.add(r)?;
        }
        self.d.add_totals(&mut tx, &totals).await?;
        totals.add_spent(&mut tx).await?;
        tx.commit().await?;
        Ok(new.count(batch))
    }

    async fn usage_buckets(
        &self,
        subject: &UsageSubject,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        granularity: Granularity,
    ) -> Result<Vec<UsageBucket>, StoreError> {
        let width: i64 = match granularity {
            Granularity::Hour => 3_600,
            Granularity::Day => 86_400,
        };
        let (sql, id) = match subject {
            UsageSubject::Key(k) => (&self.sql.usage_buckets, Value::Uuid(Some(*k))),
            UsageSubject::Owner(o) => (&self.sql.owner_usage_buckets, Value::Text(Some(o.clone()))),
        };
        let args = vec![
            id,
            Value::Time(Some(from)),
            Value::Time(Some(to)),
            Value::Int(Some(width)),
        ];
        let mut s = self.d.conn().await?;
        let rows = s.fetch_all(sql, args).await?;
        rows.iter().map(bucket).collect()
    }

    async fn usage_events(&self, q: &UsageQuery) -> Result<Vec<UsageRecord>, StoreError> {
        let args = vec![
            Value::Uuid(q.key_id),
            Value::Uuid(q.after),
            Value::Int(Some(i64::from(q.limit))),
        ];
        let mut s = self.d.conn().await?;
        let rows = s.fetch_all(EVENTS, args).await?;
        rows.iter().map(event).collect()
    }

    async fn prune_usage(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let mut s = self.d.conn().await?;
        s.execute(PRUNE, vec![Value::Time(Some(before))]).await
    }
}
