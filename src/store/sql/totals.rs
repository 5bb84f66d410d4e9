//! What a batch's new usage records add to the hourly rollups, the keys' use
//! counts and the credits spent. Rows are handed out sorted (by key), so that
//! two writers lock them in the same order.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{Session, Value, record_time};
use crate::credits::Account;
use crate::outcome::Outcome;
use crate::store::StoreError;
use crate::usage::UsageRecord;

/// A rollup upsert: `usage_hourly`'s columns, then `$rows` (the rows to add,
/// in that order), then adding them to a row already there. One text for the
/// per-row statement here and a backend's bulk form.
macro_rules! upsert_rollup {
    ($rows:literal) => {
        concat!(
            "INSERT INTO usage_hourly AS h (key_id, hour, route, outcome, requests, \
             latency_us_sum, latency_us_max, bytes_in, bytes_out, credits) ",
            $rows,
            " ON CONFLICT (key_id, hour, route, outcome) DO UPDATE SET \
             requests = h.requests + excluded.requests, \
             credits = h.credits + excluded.credits, \
             latency_us_sum = h.latency_us_sum + excluded.latency_us_sum, \
             latency_us_max = CASE WHEN excluded.latency_us_max > h.latency_us_max \
             THEN excluded.latency_us_max ELSE h.latency_us_max END, \
             bytes_in = h.bytes_in + excluded.bytes_in, bytes_out = h.bytes_out + excluded.bytes_out"
        )
    };
}
pub(crate) use upsert_rollup;

const UPSERT_ROLLUP: &str = upsert_rollup!("VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)");
const ADD_USES: &str = "UPDATE api_key_usage SET use_count = use_count + $2, \
     last_used_at = CASE WHEN last_used_at IS NULL OR last_used_at < $3 THEN $3 \
     ELSE last_used_at END WHERE key_id = $1";

/// One rollup row's additions.
#[derive(Default)]
pub struct Rollup {
    pub requests: i64,
    pub latency_sum: i64,
    pub latency_max: i64,
    pub bytes_in: i64,
    pub bytes_out: i64,
    pub credits: i64,
}

/// A rollup row: key (nil without one), hour, route (shared, not copied per
/// record), outcome.
pub type RollupKey = (Uuid, DateTime<Utc>, Option<Arc<str>>, Outcome);

/// One key's uses in the batch: how many, and the last one's time.
pub struct Uses {
    pub key_id: Uuid,
    pub count: i64,
    pub last: DateTime<Utc>,
}

/// Per key × hour × route × outcome, per key, and per balance.
#[derive(Default)]
pub struct Totals {
    rollups: HashMap<RollupKey, Rollup>,
    uses: HashMap<Uuid, (i64, DateTime<Utc>)>,
    /// Credits debited per account and epoch.
    spent: HashMap<(Account, i64), i64>,
}

impl Totals {
    pub fn add(&mut self, r: &UsageRecord) -> Result<(), StoreError> {
        let ts = record_time(r)?;
        let hour = DateTime::from_timestamp(ts.timestamp() - ts.timestamp().rem_euclid(3600), 0)
            .unwrap_or(ts);
        let key = (
            r.key_id.unwrap_or(Uuid::nil()),
            hour,
            r.route.clone(),
            r.outcome,
        );
        let roll = self.rollups.entry(key).or_default();
        let latency = i64::try_from(r.latency_us).unwrap_or(i64::MAX);
        roll.requests += 1;
        roll.latency_sum = roll.latency_sum.saturating_add(latency);
        roll.latency_max = roll.latency_max.max(latency);
        roll.bytes_in = roll.bytes_in.saturating_add_unsigned(r.bytes_in);
        roll.bytes_out = roll.bytes_out.saturating_add_unsigned(r.bytes_out);
        roll.credits = roll.credits.saturating_add(r.credits);
        if let Some(c) = &r.charged_to {
            let spent = self.spent.entry((c.account.clone(), c.epoch)).or_default();
            *spent = spent.saturating_add(r.credits);
        }
        if let Some(k) = r.key_id {
            let u = self.uses.entry(k).or_insert((0, ts));
            u.0 += 1;
            u.1 = u.1.max(ts);
        }
        Ok(())
    }

    /// The rollup rows, sorted by key, hour, route and outcome.
    pub fn rollups(&self) -> Vec<(&RollupKey, &Rollup)> {
        let mut rows: Vec<_> = self.rollups.iter().collect();
        rows.sort_unstable_by(|(a, _), (b, _)| {
            (a.0, a.1, &a.2, a.3.as_str()).cmp(&(b.0, b.1, &b.2, b.3.as_str()))
        });
        rows
    }

    /// The keys' uses, sorted by key.
    pub fn uses(&self) -> Vec<Uses> {
        let mut rows: Vec<Uses> = (self.uses.iter())
            .map(|(&key_id, &(count, last))| Uses {
                key_id,
                count,
                last,
            })
            .collect();
        rows.sort_unstable_by_key(|u| u.key_id);
        rows
    }

    /// Rollups and uses, one statement per row (a backend without a bulk form).
    pub async fn write_each<S: Session>(&self, tx: &mut S) -> Result<(), StoreError> {
        write_rows(tx, &self.rollups(), &self.uses()).await
    }

    /// The credits spent, per balance and epoch.
    pub async fn add_spent<S: Session>(&self, tx: &mut S) -> Result<(), StoreError> {
        for ((account, epoch), n) in &self.spent {
            super::credits::add_spent(tx, account, *epoch, *n).await?;
        }
        Ok(())
    }
}

/// `rows` and `uses` (as [`Totals::rollups`] and [`Totals::uses`] hand them
/// out), one statement per row.
pub async fn write_rows<S: Session>(
    tx: &mut S,
    rows: &[(&RollupKey, &Rollup)],
    uses: &[Uses],
) -> Result<(), StoreError> {
    for ((key_id, hour, route, outcome), r) in rows {
        let args = vec![
            Value::Uuid(Some(*key_id)),
            Value::Time(Some(*hour)),
            Value::Text(Some(route.as_deref().unwrap_or("").to_owned())),
            Value::Text(Some(outcome.as_str().to_owned())),
            Value::Int(Some(r.requests)),
            Value::Int(Some(r.latency_sum)),
            Value::Int(Some(r.latency_max)),
            Value::Int(Some(r.bytes_in)),
            Value::Int(Some(r.bytes_out)),
            Value::Int(Some(r.credits)),
        ];
        tx.execute(UPSERT_ROLLUP, args).await?;
    }
    for u in uses {
        let args = vec![
            Value::Uuid(Some(u.key_id)),
            Value::Int(Some(u.count)),
            Value::Time(Some(u.last)),
        ];
        tx.execute(ADD_USES, args).await?;
    }
    Ok(())
}
