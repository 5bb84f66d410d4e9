//! Usage reports: a key's buckets by outcome, raw records for export, pruning.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use uuid::Uuid;

use super::{ServiceError, page};
use crate::clock::Clock;
use crate::store::{Granularity, KeyStore, StoreError, UsageBucket, UsageQuery, UsageStore};
use crate::usage::UsageRecord;

pub struct UsageService {
    usage: Arc<dyn UsageStore>,
    keys: Arc<dyn KeyStore>,
    clock: Clock,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UsageReport {
    pub key_id: Uuid,
    pub granularity: Granularity,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// Requests per bucket and outcome (UTC buckets).
    pub buckets: Vec<UsageBucket>,
}

impl UsageService {
    pub fn new(usage: Arc<dyn UsageStore>, keys: Arc<dyn KeyStore>, clock: Clock) -> UsageService {
        UsageService { usage, keys, clock }
    }

    /// A key's usage in `[from, to)`; by default the last 24 hours (hourly)
    /// or 30 days (daily) before now.
    pub async fn key_report(
        &self,
        key_id: Uuid,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
        granularity: Option<Granularity>,
    ) -> Result<UsageReport, ServiceError> {
        let now = self.clock.now();
        if self.keys.get_key(key_id, now).await?.is_none() {
            return Err(StoreError::NotFound(key_id).into());
        }
        let granularity = granularity.unwrap_or(Granularity::Hour);
        let to = to.unwrap_or(now);
        let from = from.unwrap_or_else(|| {
            to - match granularity {
                Granularity::Hour => Duration::hours(24),
                Granularity::Day => Duration::days(30),
            }
        });
        if from >= to {
            return Err(ServiceError::field("from", "must be before `to`"));
        }
        let buckets = self
            .usage
            .usage_buckets(key_id, from, to, granularity)
            .await?;
        Ok(UsageReport {
            key_id,
            granularity,
            from,
            to,
            buckets,
        })
    }

    /// Up to `limit` raw records (of one key, or all), oldest first, handed
    /// to `each` page by page.
    pub async fn export(
        &self,
        key_id: Option<Uuid>,
        limit: usize,
        each: &mut dyn FnMut(&UsageRecord),
    ) -> Result<(), ServiceError> {
        let mut q = UsageQuery {
            key_id,
            after: None,
            limit: page::MAX,
        };
        let mut left = limit;
        while left > 0 {
            let records = self.usage.usage_events(&q).await?;
            let Some(last) = records.last() else { break };
            q.after = Some(last.id);
            records.iter().take(left).for_each(&mut *each);
            left = left.saturating_sub(records.len());
        }
        Ok(())
    }

    /// Deletes raw records older than `age`; returns how many and the cutoff.
    pub async fn prune(&self, age: Duration) -> Result<(u64, DateTime<Utc>), ServiceError> {
        let before = self.clock.now() - age;
        Ok((self.usage.prune_usage(before).await?, before))
    }
}
