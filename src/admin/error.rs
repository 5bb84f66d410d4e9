//! Admin API errors: the same JSON body as the proxy's rejections, with field
//! paths for invalid input. Client mistakes are 4xx, never 500.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::json;

use crate::keys::validate::FieldError;
use crate::service::ServiceError;
use crate::store::StoreError;

tokio::task_local! {
    /// The request id of the admin request being handled.
    pub static REQUEST_ID: String;
}

pub fn current_request_id() -> String {
    REQUEST_ID.try_with(Clone::clone).unwrap_or_default()
}

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub fields: Vec<FieldError>,
}

/// The error body, for the OpenAPI document.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
    pub request_id: String,
    /// Present for invalid input: each problem with its field path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fields: Option<Vec<FieldError>>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            fields: Vec::new(),
        }
    }

    pub fn invalid(fields: Vec<FieldError>) -> ApiError {
        let message = fields
            .iter()
            .map(|f| {
                if f.field.is_empty() {
                    f.message.clone()
                } else {
                    format!("{}: {}", f.field, f.message)
                }
            })
            .collect::<Vec<_>>()
            .join("; ");
        ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: "invalid_field",
            message,
            fields,
        }
    }

    pub fn field(field: &str, message: impl Into<String>) -> ApiError {
        Self::invalid(vec![FieldError {
            field: field.into(),
            message: message.into(),
        }])
    }

    pub fn not_found(what: impl Into<String>) -> ApiError {
        Self::new(StatusCode::NOT_FOUND, "not_found", what)
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        let conflict = |e: &dyn std::fmt::Display| {
            ApiError::new(StatusCode::CONFLICT, "conflict", e.to_string())
        };
        match e {
            ServiceError::Invalid(f) => ApiError::invalid(f),
            ServiceError::Store(
                e @ (StoreError::NotFound(_)
                | StoreError::OwnerNotFound(_)
                | StoreError::DeliveryNotFound(_)),
            ) => ApiError::not_found(e.to_string()),
            ServiceError::Store(
                e @ (StoreError::OwnerLimit { .. }
                | StoreError::Conflict { .. }
                | StoreError::OwnerExists(_)
                | StoreError::OwnerHasKeys { .. }),
            ) => conflict(&e),
            ServiceError::Store(e @ StoreError::Unavailable(_)) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                e.to_string(),
            ),
            e => {
                tracing::error!(error = %e, "admin API: internal error");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "internal error; see the gateway log",
                )
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut error = json!({
            "code": self.code,
            "message": self.message,
            "request_id": current_request_id(),
        });
        if !self.fields.is_empty() {
            error["fields"] = json!(self.fields);
        }
        let mut resp = (self.status, Json(json!({ "error": error }))).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"keygate-admin\""),
            );
        }
        resp
    }
}
