//! The admin listener: `/healthz`, `/readyz`, `/metrics` and `/openapi.json`
//! without auth, and the key management API under `/v1` behind bearer tokens
//! (off when no token is configured).

mod auth;
mod error;
mod extract;
mod health;
mod keys;
mod openapi;
mod reports;
mod verify;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use axum::Router;
use axum::http::header;
use axum::middleware;
use axum::response::IntoResponse;
use axum::routing::{get, post};

use crate::clock::Clock;
use crate::config::Secret;
use crate::keys::{KeyService, KeyTable};
use crate::metrics::Metrics;
use crate::proxy::ProxyState;
use crate::ratelimit::Health as RateLimitHealth;
pub use error::ApiError;
pub use openapi::json as openapi_json;

/// What the admin handlers read.
pub struct AdminState {
    pub metrics: Arc<Metrics>,
    pub keys: Arc<KeyTable>,
    pub ratelimit: Arc<RateLimitHealth>,
    pub store_reachable: Arc<AtomicBool>,
    pub clock: Clock,
    pub service: KeyService,
    /// The proxy's policy, limiter and usage sink, for `/v1/verify`.
    pub proxy: Arc<ProxyState>,
    tokens: Vec<auth::Token>,
}

impl AdminState {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        metrics: Arc<Metrics>,
        keys: Arc<KeyTable>,
        ratelimit: Arc<RateLimitHealth>,
        store_reachable: Arc<AtomicBool>,
        clock: Clock,
        service: KeyService,
        proxy: Arc<ProxyState>,
        tokens: &[Secret],
    ) -> AdminState {
        AdminState {
            metrics,
            keys,
            ratelimit,
            store_reachable,
            clock,
            service,
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
        .route("/v1/verify", post(verify::verify))
        .route("/v1/audit", get(reports::audit))
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
