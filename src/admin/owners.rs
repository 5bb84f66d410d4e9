//! `/v1/owners`: create, list, get, update, delete (without keys), credits
//! and usage; and `POST /v1/keys/{id}/credits`.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::AdminState;
use super::error::{ApiError, ErrorBody};
use super::extract::{ApiJson, ApiQuery};
use super::keys::key_id;
use crate::audit::Actor;
use crate::credits::CreditChange;
use crate::keys::model::KeyRecord;
use crate::owners::{OwnerPatch, OwnerRecord};
use crate::service::{OwnerUsageReport, page};
use crate::store::Granularity;

#[utoipa::path(post, path = "/v1/owners", tag = "owners", request_body(content = OwnerPatch, description = "The owner's fields (`id` required)"),
    responses((status = 201, body = OwnerRecord), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "the owner exists"), (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn create(
    State(s): State<Arc<AdminState>>,
    Extension(actor): Extension<Actor>,
    ApiJson(req): ApiJson<OwnerPatch>,
) -> Result<(StatusCode, Json<OwnerRecord>), ApiError> {
    let owner = s.services.owners.create(req, &actor).await?;
    Ok((StatusCode::CREATED, Json(owner)))
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Page size, 1-1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct OwnerPage {
    owners: Vec<OwnerRecord>,
    /// Pass as `cursor` for the next page; null on the last page.
    next_cursor: Option<String>,
}

#[utoipa::path(get, path = "/v1/owners", tag = "owners", params(ListParams),
    responses((status = 200, body = OwnerPage), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list(
    State(s): State<Arc<AdminState>>,
    ApiQuery(p): ApiQuery<ListParams>,
) -> Result<Json<OwnerPage>, ApiError> {
    let limit = page::size("limit", p.limit)?;
    let after = p.cursor.filter(|c| !c.is_empty());
    let (owners, next_cursor) = s.services.owners.list(after, limit).await?;
    Ok(Json(OwnerPage {
        owners,
        next_cursor,
    }))
}

#[utoipa::path(get, path = "/v1/owners/{id}", tag = "owners", params(("id" = String, Path, description = "owner id")),
    responses((status = 200, body = OwnerRecord), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn get(
    State(s): State<Arc<AdminState>>,
    Path(id): Path<String>,
) -> Result<Json<OwnerRecord>, ApiError> {
    Ok(Json(s.services.owners.get(&id).await?))
}

#[utoipa::path(patch, path = "/v1/owners/{id}", tag = "owners", request_body(content = OwnerPatch, description = "The fields to change; absent fields stay, objects are replaced whole"), params(("id" = String, Path, description = "owner id")),
    responses((status = 200, body = OwnerRecord), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn update(
    State(s): State<Arc<AdminState>>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<OwnerPatch>,
) -> Result<Json<OwnerRecord>, ApiError> {
    Ok(Json(s.services.owners.update(&id, req, &actor).await?))
}

#[utoipa::path(delete, path = "/v1/owners/{id}", tag = "owners", params(("id" = String, Path, description = "owner id")),
    responses((status = 204, description = "Deleted"), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "the owner still has keys"), (status = 503, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn delete(
    State(s): State<Arc<AdminState>>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    s.services.owners.delete(&id, &actor).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/v1/owners/{id}/credits", tag = "owners", request_body(content = CreditChange, description = "`add` or `set`"), params(("id" = String, Path, description = "owner id")),
    responses((status = 200, body = OwnerRecord), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn owner_credits(
    State(s): State<Arc<AdminState>>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<CreditChange>,
) -> Result<Json<OwnerRecord>, ApiError> {
    Ok(Json(s.services.owners.credits(&id, &req, &actor).await?))
}

#[utoipa::path(post, path = "/v1/keys/{id}/credits", tag = "keys", request_body(content = CreditChange, description = "`add` or `set`"), params(("id" = String, Path, description = "key id")),
    responses((status = 200, body = KeyRecord), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody, description = "the key is revoked"), (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn key_credits(
    State(s): State<Arc<AdminState>>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<CreditChange>,
) -> Result<Json<KeyRecord>, ApiError> {
    Ok(Json(
        s.services.keys.credits(key_id(&id)?, &req, &actor).await?,
    ))
}

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

#[utoipa::path(get, path = "/v1/owners/{id}/usage", tag = "usage", params(("id" = String, Path, description = "owner id"), UsageParams),
    responses((status = 200, body = OwnerUsageReport), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn usage(
    State(s): State<Arc<AdminState>>,
    Path(id): Path<String>,
    ApiQuery(p): ApiQuery<UsageParams>,
) -> Result<Json<OwnerUsageReport>, ApiError> {
    let report = s
        .services
        .usage
        .owner_report(&id, p.from, p.to, p.granularity)
        .await?;
    Ok(Json(report))
}
