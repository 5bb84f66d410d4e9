//! The admin listener: `/healthz`, `/readyz`, `/metrics` and `/openapi.json`
//! without auth, and the key, owner, credits and webhook API under `/v1` behind bearer
//! tokens with roles (off when no token is configured).

mod auth;
mod error;
mod extract;
mod health;
mod keys;
mod openapi;
mod owners;
mod reports;
mod verify;
mod webhooks;

use std::sync::Arc;

use axum::Router;
use axum::http::header;
use axum::middleware;
use axum::response::IntoResponse;
use axum::routing::{get, post};

use crate::config::AdminToken;
use crate::keys::KeyTable;
use crate::proxy::ProxyState;
use crate::ratelimit::Health as RateLimitHealth;
use crate::service::Services;
pub use error::ApiError;
pub use openapi::json as openapi_json;

/// What `/readyz` looks at.
pub struct Readiness {
    pub keys: Arc<KeyTable>,
    pub ratelimit: Arc<RateLimitHealth>,
    pub sync: Arc<crate::keys::sync::SyncStatus>,
}

/// What the admin handlers read.
pub struct AdminState {
    pub readiness: Readiness,
    pub services: Services,
    /// The proxy's gate, metrics, clock and usage sink, for `/v1/verify` and `/metrics`.
    pub proxy: Arc<ProxyState>,
    tokens: Vec<auth::Token>,
}

impl AdminState {
    pub fn new(
        readiness: Readiness,
        services: Services,
        proxy: Arc<ProxyState>,
        tokens: &[AdminToken],
    ) -> AdminState {
        AdminState {
            readiness,
            services,
            proxy,
            tokens: tokens.iter().map(auth::Token::new).collect(),
        }
    }

    pub fn api_enabled(&self) -> bool {
        !self.tokens.is_empty()
    }
}

pub fn router(state: Arc<AdminState>) -> Router {
    let api = Router::new()
        .route("/v1/keys", post(keys::create).get(keys::list))
        .route(
            "/v1/keys/{id}",
            get(keys::get).patch(keys::update).delete(keys::delete),
        )
        .route("/v1/keys/{id}/revoke", post(keys::revoke))
        .route("/v1/keys/{id}/rotate", post(keys::rotate))
        .route("/v1/keys/{id}/usage", get(reports::key_usage))
        .route("/v1/keys/{id}/credits", post(owners::key_credits))
        .route("/v1/owners", post(owners::create).get(owners::list))
        .route(
            "/v1/owners/{id}",
            get(owners::get)
                .patch(owners::update)
                .delete(owners::delete),
        )
        .route("/v1/owners/{id}/credits", post(owners::owner_credits))
        .route("/v1/owners/{id}/usage", get(owners::usage))
        .route("/v1/verify", post(verify::verify))
        .route("/v1/audit", get(reports::audit))
        .route("/v1/webhooks/deliveries", get(webhooks::deliveries))
        .route("/v1/webhooks/deliveries/{id}/retry", post(webhooks::retry))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ));
    health::routes()
        .route(
            "/openapi.json",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "application/json")],
                    openapi::json(),
                )
            }),
        )
        .merge(api)
        .fallback(|| async { ApiError::not_found("no such endpoint").into_response() })
        .layer(axum::extract::DefaultBodyLimit::max(extract::MAX_BODY))
        .layer(middleware::from_fn(auth::request_id))
        .with_state(state)
}
