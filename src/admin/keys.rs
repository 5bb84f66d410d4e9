//! `/v1/keys`: create, list, get, update, revoke, rotate, delete.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::AdminState;
use super::error::{ApiError, ErrorBody};
use super::extract::{ApiJson, ApiQuery};
use crate::audit::Actor;
use crate::keys::model::{KeyPatch, KeyRecord};
use crate::service::{CreatedKey, KeyService, RotatedKey, page};
use crate::store::KeyQuery;

pub(super) fn key_id(id: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(id).map_err(|_| ApiError::not_found(format!("no key with id {id:?}")))
}

#[utoipa::path(post, path = "/v1/keys", tag = "keys", request_body(content = KeyPatch, description = "The key's fields (`owner_id` required), `prefix`, and `expires_in` or `expires_at`"),
    responses((status = 201, body = CreatedKey, description = "Created; the secret is shown only here"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody, description = "keys.max_per_owner reached"),
        (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn create(
    State(s): State<Arc<AdminState>>,
    Extension(actor): Extension<Actor>,
    ApiJson(req): ApiJson<KeyPatch>,
) -> Result<(StatusCode, Json<CreatedKey>), ApiError> {
    Ok((
        StatusCode::CREATED,
        Json(s.services.keys.create(req, &actor).await?),
    ))
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    owner_id: Option<String>,
    /// Default: all.
    status: Option<StatusFilter>,
    tag: Option<String>,
    /// Page size, 1-1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

#[derive(Debug, Clone, Copy, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum StatusFilter {
    Active,
    Disabled,
    Expired,
    Revoked,
    All,
}

impl StatusFilter {
    fn as_str(self) -> &'static str {
        match self {
            StatusFilter::Active => "active",
            StatusFilter::Disabled => "disabled",
            StatusFilter::Expired => "expired",
            StatusFilter::Revoked => "revoked",
            StatusFilter::All => "all",
        }
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct KeyPage {
    keys: Vec<KeyRecord>,
    /// Pass as `cursor` for the next page; null on the last page. Pages stay
    /// stable while keys are added.
    next_cursor: Option<String>,
}

#[utoipa::path(get, path = "/v1/keys", tag = "keys", params(ListParams),
    responses((status = 200, body = KeyPage), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list(
    State(s): State<Arc<AdminState>>,
    ApiQuery(p): ApiQuery<ListParams>,
) -> Result<Json<KeyPage>, ApiError> {
    let status = KeyService::status_filter(p.status.map_or("all", StatusFilter::as_str))?;
    let limit = page::size("limit", p.limit)?;
    let after = match p.cursor.as_deref().filter(|c| !c.is_empty()) {
        Some(c) => Some(
            Uuid::parse_str(c)
                .map_err(|_| ApiError::field("cursor", "not a cursor from a previous page"))?,
        ),
        None => None,
    };
    let q = KeyQuery {
        owner_id: p.owner_id,
        status,
        tag: p.tag,
        after,
        limit,
    };
    let (keys, next) = s.services.keys.list(q).await?;
    Ok(Json(KeyPage {
        keys,
        next_cursor: next.map(|u| u.to_string()),
    }))
}

#[utoipa::path(get, path = "/v1/keys/{id}", tag = "keys", params(("id" = String, Path, description = "key id")),
    responses((status = 200, body = KeyRecord), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn get(
    State(s): State<Arc<AdminState>>,
    Path(id): Path<String>,
) -> Result<Json<KeyRecord>, ApiError> {
    Ok(Json(s.services.keys.get(key_id(&id)?).await?))
}

#[utoipa::path(patch, path = "/v1/keys/{id}", tag = "keys", request_body(content = KeyPatch, description = "The fields to change; absent fields stay, lists and objects are replaced whole, `\"expires_at\": null` clears"), params(("id" = String, Path, description = "key id")),
    responses((status = 200, body = KeyRecord), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "the key is revoked"), (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn update(
    State(s): State<Arc<AdminState>>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<KeyPatch>,
) -> Result<Json<KeyRecord>, ApiError> {
    Ok(Json(
        s.services.keys.update(key_id(&id)?, req, &actor).await?,
    ))
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RevokeRequest {
    reason: Option<String>,
}

#[utoipa::path(post, path = "/v1/keys/{id}/revoke", tag = "keys", request_body(content = Option<RevokeRequest>, description = "optional"), params(("id" = String, Path, description = "key id")),
    responses((status = 200, body = KeyRecord), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn revoke(
    State(s): State<Arc<AdminState>>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<RevokeRequest>,
) -> Result<Json<KeyRecord>, ApiError> {
    Ok(Json(
        s.services
            .keys
            .revoke(key_id(&id)?, req.reason, &actor)
            .await?,
    ))
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateRequest {
    /// How long the old secret keeps working, e.g. "24h" (default).
    grace: Option<String>,
}

#[utoipa::path(post, path = "/v1/keys/{id}/rotate", tag = "keys", request_body(content = Option<RotateRequest>, description = "optional"), params(("id" = String, Path, description = "key id")),
    responses((status = 200, body = RotatedKey, description = "The new key and secret, and the previous key"), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn rotate(
    State(s): State<Arc<AdminState>>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<RotateRequest>,
) -> Result<Json<RotatedKey>, ApiError> {
    let id = key_id(&id)?;
    let grace = match req.grace.as_deref() {
        None => Duration::from_secs(24 * 3600),
        Some(g) => humantime::parse_duration(g)
            .map_err(|_| ApiError::field("grace", "a duration up to a year, e.g. \"24h\""))?,
    };
    Ok(Json(s.services.keys.rotate(id, grace, &actor).await?))
}

#[utoipa::path(delete, path = "/v1/keys/{id}", tag = "keys", params(("id" = String, Path, description = "key id")),
    responses((status = 204, description = "Deleted, with its usage records"), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn delete(
    State(s): State<Arc<AdminState>>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    s.services.keys.delete(key_id(&id)?, &actor).await?;
    Ok(StatusCode::NO_CONTENT)
}
