//! `GET /v1/keys/{id}/usage` and `GET /v1/audit`.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::AdminState;
use super::error::{ApiError, ErrorBody};
use super::extract::ApiQuery;
use super::keys::key_id;
use crate::audit::AuditEntry;
use crate::service::UsageReport;
use crate::store::Granularity;

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

#[utoipa::path(get, path = "/v1/keys/{id}/usage", tag = "usage", params(("id" = String, Path, description = "key id"), UsageParams),
    responses((status = 200, body = UsageReport), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn key_usage(
    State(s): State<Arc<AdminState>>,
    Path(id): Path<String>,
    ApiQuery(p): ApiQuery<UsageParams>,
) -> Result<Json<UsageReport>, ApiError> {
    let report = s
        .services
        .usage
        .key_report(key_id(&id)?, p.from, p.to, p.granularity)
        .await?;
    Ok(Json(report))
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
    let (entries, next_after) = s.services.audit.page(p.after.unwrap_or(0), p.limit).await?;
    Ok(Json(AuditPage {
        entries,
        next_after,
    }))
}
