//! `/healthz`, `/readyz`, `/metrics`.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use serde_json::json;

use super::AdminState;

pub fn routes() -> axum::Router<Arc<AdminState>> {
    axum::Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
}

async fn healthz() -> impl IntoResponse {
    Json(json!({"status": "ok"}))
}

/// Ready once the key table is loaded and rate limiting can answer. A store
/// outage after the first load does not make the gateway unready: it serves from
/// its table, and failing every instance's readiness at once would turn a
/// dependency outage into a full outage.
async fn readyz(State(s): State<Arc<AdminState>>) -> impl IntoResponse {
    let r = &s.readiness;
    let keys_loaded = r.keys.is_ready();
    let store = r.sync.reachable();
    let rl = r.ratelimit.state();
    let ready = keys_loaded && rl.can_serve();
    let body = json!({
        "status": if ready { "ready" } else { "not_ready" },
        "keys": if keys_loaded { "loaded" } else { "not_loaded" },
        "keys_loaded": r.keys.len(),
        "store": if store { "reachable" } else { "unreachable" },
        "key_push": r.sync.push().as_str(),
        "ratelimit": rl.as_str(),
    });
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body))
}

async fn metrics(State(s): State<Arc<AdminState>>) -> impl IntoResponse {
    let (metrics, keys) = (&s.proxy.metrics, &s.readiness.keys);
    let now = s.proxy.clock.now_ms();
    metrics.keys_loaded.set(keys.len() as i64);
    if let Some(age) = keys.sync_age_secs(now) {
        metrics.key_sync_age.set(age);
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        metrics.render(),
    )
}
