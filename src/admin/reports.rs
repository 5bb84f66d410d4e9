//! `GET /v1/keys/{id}/usage` and `GET /v1/audit`.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::AdminState;
use super::error::{ApiError, ErrorBody};
use super::extract::ApiQuery;
use super::keys::key_id;
use crate::audit::AuditEntry;
use crate::store::{Granularity, UsageBucket};

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct UsageParams {
    /// Start (RFC 3339); default: 24 h (hour) or 30 days (day) before `to`.
    from: Option<DateTime<Utc>>,
    /// End, exclusive (RFC 3339); default: now.
    to: Option<DateTime<Utc>>,
    /// `hour` (default) or `day`.
    granularity: Option<Granularity>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct UsageReport {
    key_id: Uuid,
    granularity: Granularity,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    /// Requests per bucket and outcome (UTC buckets).
    buckets: Vec<UsageBucket>,
}

#[utoipa::path(get, path = "/v1/keys/{id}/usage", tag = "usage", params(("id" = String, Path, description = "key id"), UsageParams),
    responses((status = 200, body = UsageReport), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn key_usage(
    State(s): State<Arc<AdminState>>,
    Path(id): Path<String>,
    ApiQuery(p): ApiQuery<UsageParams>,
) -> Result<Json<UsageReport>, ApiError> {
    let id = key_id(&id)?;
    s.service.get(id).await?;
    let granularity = p.granularity.unwrap_or(Granularity::Hour);
    let to = p.to.unwrap_or_else(|| s.clock.now());
    let from = p.from.unwrap_or_else(|| {
        to - match granularity {
            Granularity::Hour => Duration::hours(24),
            Granularity::Day => Duration::days(30),
        }
    });
    if from >= to {
        return Err(ApiError::field("from", "must be before `to`"));
    }
    let buckets = s
        .service
        .store()
        .usage_buckets(id, from, to, granularity)
        .await?;
    Ok(Json(UsageReport {
        key_id: id,
        granularity,
        from,
        to,
        buckets,
    }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditParams {
    /// Records after this sequence number (default 0).
    #[param(minimum = 0)]
    after: Option<i64>,
    /// 1-1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct AuditPage {
    entries: Vec<AuditEntry>,
    /// Pass as `after` for the next page; null on the last page.
    next_after: Option<i64>,
}

#[utoipa::path(get, path = "/v1/audit", tag = "audit", params(AuditParams),
    responses((status = 200, body = AuditPage), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn audit(
    State(s): State<Arc<AdminState>>,
    ApiQuery(p): ApiQuery<AuditParams>,
) -> Result<Json<AuditPage>, ApiError> {
    let after = p.after.unwrap_or(0);
    if after < 0 {
        return Err(ApiError::field("after", "must be at least 0"));
    }
    let limit = p.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::field("limit", "must be 1-1000"));
    }
    let entries = s.service.store().audit_page(after, limit).await?;
    let next_after = (entries.len() == limit as usize)
        .then(|| entries.last().map(|e| e.seq))
        .flatten();
    Ok(Json(AuditPage {
        entries,
        next_after,
    }))
}
