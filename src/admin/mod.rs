//! The admin listener: health, readiness and metrics (no auth), plus the key
//! management API when a token is configured.

mod health;

use std::sync::Arc;

use axum::Router;

use crate::clock::Clock;
use crate::keys::KeyTable;
use crate::metrics::Metrics;
use crate::ratelimit::Health as RateLimitHealth;

/// What the admin handlers read.
pub struct AdminState {
    pub metrics: Arc<Metrics>,
    pub keys: Arc<KeyTable>,
    pub ratelimit: Arc<RateLimitHealth>,
    pub store_reachable: Arc<std::sync::atomic::AtomicBool>,
    pub clock: Clock,
}

pub fn router(state: Arc<AdminState>) -> Router {
    health::routes().with_state(state)
}
