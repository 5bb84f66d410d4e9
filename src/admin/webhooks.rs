//! `GET /v1/webhooks/deliveries` (the delivery log) and
//! `POST /v1/webhooks/deliveries/{id}/retry` (redelivery).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::AdminState;
use super::error::{ApiError, ErrorBody};
use super::extract::ApiQuery;
use crate::service::page;
use crate::webhooks::model::{Delivery, DeliveryQuery, DeliveryStatus};

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeliveryParams {
    /// `pending`, `delivered` or `dead`; default: all.
    status: Option<DeliveryStatus>,
    /// One event type, e.g. `key.revoked`.
    event_type: Option<String>,
    /// One endpoint, by its `name`.
    endpoint: Option<String>,
    /// Page size, 1-1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct DeliveryPage {
    /// Newest first.
    deliveries: Vec<Delivery>,
    /// Pass as `cursor` for the next (older) page; null on the last page.
    next_cursor: Option<String>,
}

fn delivery_id(id: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(id).map_err(|_| ApiError::not_found(format!("no delivery with id {id:?}")))
}

#[utoipa::path(get, path = "/v1/webhooks/deliveries", tag = "webhooks", params(DeliveryParams),
    responses((status = 200, body = DeliveryPage), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn deliveries(
    State(s): State<Arc<AdminState>>,
    ApiQuery(p): ApiQuery<DeliveryParams>,
) -> Result<Json<DeliveryPage>, ApiError> {
    let limit = page::size("limit", p.limit)?;
    let before = match p.cursor.as_deref().filter(|c| !c.is_empty()) {
        Some(c) => Some(Uuid::parse_str(c).map_err(|_| {
            ApiError::from(crate::service::ServiceError::field(
                "cursor",
                "not a cursor",
            ))
        })?),
        None => None,
    };
    let q = DeliveryQuery {
        status: p.status,
        event_type: p.event_type.filter(|t| !t.is_empty()),
        endpoint: p.endpoint.filter(|e| !e.is_empty()),
        before,
        limit,
    };
    let (deliveries, next) = s.services.webhooks.list(q).await?;
    Ok(Json(DeliveryPage {
        deliveries,
        next_cursor: next.map(|n| n.to_string()),
    }))
}

#[utoipa::path(post, path = "/v1/webhooks/deliveries/{id}/retry", tag = "webhooks", params(("id" = String, Path, description = "delivery id")),
    responses((status = 200, body = Delivery, description = "Due now, with a fresh max_age; the same event id"),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn retry(
    State(s): State<Arc<AdminState>>,
    Path(id): Path<String>,
) -> Result<Json<Delivery>, ApiError> {
    let id = delivery_id(&id)?;
    Ok(Json(s.services.webhooks.retry(id).await?))
}
