//! Usage reports: a key's buckets by outcome, raw records for export, pruning.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use uuid::Uuid;

use super::{ServiceError, page};
use crate::clock::Clock;
use crate::store::{
    Granularity, KeyStore, OwnerStore, StoreError, UsageBucket, UsageQuery, UsageStore,
    UsageSubject,
};
use crate::usage::UsageRecord;

pub struct UsageService {
    usage: Arc<dyn UsageStore>,
    keys: Arc<dyn KeyStore>,
    owners: Arc<dyn OwnerStore>,
    clock: Clock,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UsageReport {
    pub key_id: Uuid,
    pub granularity: Granularity,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// Credits the key's requests in `[from, to)` were charged.
    pub credits_spent: i64,
    /// Requests per bucket and outcome (UTC buckets).
    pub buckets: Vec<UsageBucket>,
}

/// An owner's usage: every one of its keys' requests.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct OwnerUsageReport {
    pub owner_id: String,
    pub granularity: Granularity,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// Credits the owner's keys' requests in `[from, to)` were charged.
    pub credits_spent: i64,
    /// Requests per bucket and outcome (UTC buckets), all keys together.
    pub buckets: Vec<UsageBucket>,
}

/// `[from, to)` with the defaults: the last 24 hours (hourly) or 30 days (daily).
fn span(
    now: DateTime<Utc>,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
    granularity: Option<Granularity>,
) -> Result<(DateTime<Utc>, DateTime<Utc>, Granularity), ServiceError> {
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
    Ok((from, to, granularity))
}

impl UsageService {
    pub fn new(
        usage: Arc<dyn UsageStore>,
        keys: Arc<dyn KeyStore>,
        owners: Arc<dyn OwnerStore>,
        clock: Clock,
    ) -> UsageService {
        UsageService {
            usage,
            keys,
            owners,
            clock,
        }
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
        let (from, to, granularity) = span(now, from, to, granularity)?;
        let subject = UsageSubject::Key(key_id);
        let buckets = self
            .usage
            .usage_buckets(&subject, from, to, granularity)
            .await?;
        Ok(UsageReport {
            key_id,
            granularity,
            from,
            to,
            credits_spent: buckets.iter().map(|b| b.credits).sum(),
            buckets,
        })
    }

    /// An owner's usage in `[from, to)` (the defaults of [`Self::key_report`]).
    pub async fn owner_report(
        &self,
        owner_id: &str,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
        granularity: Option<Granularity>,
    ) -> Result<OwnerUsageReport, ServiceError> {
        let now = self.clock.now();
        if self.owners.get_owner(owner_id, now).await?.is_none() {
            return Err(StoreError::OwnerNotFound(owner_id.to_owned()).into());
        }
        let (from, to, granularity) = span(now, from, to, granularity)?;
        let subject = UsageSubject::Owner(owner_id.to_owned());
        let buckets = self
            .usage
            .usage_buckets(&subject, from, to, granularity)
            .await?;
        Ok(OwnerUsageReport {
            owner_id: owner_id.to_owned(),
            granularity,
            from,
            to,
            credits_spent: buckets.iter().map(|b| b.credits).sum(),
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
