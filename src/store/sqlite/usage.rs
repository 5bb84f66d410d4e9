//! Usage records into SQLite: one `INSERT OR IGNORE` per record inside the
//! batch's transaction (SQLite statements are cheap and local).

use std::collections::HashSet;

use uuid::Uuid;

use super::SqliteSession;
use crate::store::StoreError;
use crate::store::sql::{Session, Value, record_time};
use crate::usage::UsageRecord;

const INSERT: &str = "INSERT OR IGNORE INTO usage_events (id, request_id, ts, key_id, owner_id, \
     route, method, status, outcome, latency_us, upstream_latency_us, bytes_in, bytes_out, \
     client_ip, deprecated_key, credits) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)";

fn int(v: u64) -> Value {
    Value::Int(Some(i64::try_from(v).unwrap_or(i64::MAX)))
}

pub(super) async fn insert(
    tx: &mut SqliteSession,
    batch: &[UsageRecord],
) -> Result<HashSet<Uuid>, StoreError> {
    let mut new = HashSet::with_capacity(batch.len());
    for r in batch {
        let args = vec![
            Value::Uuid(Some(r.id)),
            Value::Text(Some(r.request_id.clone())),
            Value::Time(Some(record_time(r)?)),
            Value::Uuid(r.key_id),
            Value::Text(r.owner_id.as_deref().map(str::to_owned)),
            Value::Text(r.route.as_deref().map(str::to_owned)),
            Value::Text(Some(r.method.clone())),
            Value::Int(Some(i64::from(r.status))),
            Value::Text(Some(r.outcome.as_str().to_owned())),
            int(r.latency_us),
            Value::Int(
                r.upstream_latency_us
                    .map(|v| i64::try_from(v).unwrap_or(i64::MAX)),
            ),
            int(r.bytes_in),
            int(r.bytes_out),
            Value::Text(r.client_ip.map(|ip| ip.to_string())),
            Value::Bool(Some(r.deprecated_key)),
            Value::Int(Some(r.credits)),
        ];
        if tx.execute(INSERT, args).await? == 1 {
            new.insert(r.id);
        }
    }
    Ok(new)
}
