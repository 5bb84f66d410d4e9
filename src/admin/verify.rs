//! `POST /v1/verify`: the decision the proxy makes (key state, route, IP,
//! scopes, rate limits), for applications that call keygate rather than sit
//! behind it. Always 200 with `valid` and `code` for a well-formed request.

use std::net::IpAddr;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::AdminState;
use super::error::{ApiError, ErrorBody};
use super::extract::ApiJson;
use crate::auth::scope;
use crate::outcome::{Detail, Outcome, Rejection};
use crate::proxy::policy::{Attempt, Served};

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyRequest {
    /// The API key to check.
    #[schema(min_length = 1)]
    pub key: String,
    /// A route name from the gateway's configuration: its scopes, per-key caps
    /// and `allowed_routes` apply.
    pub route: Option<String>,
    /// Scopes the key must hold (in addition to the route's).
    pub scopes: Option<Vec<String>>,
    /// The client address; a key with an IP allowlist fails without one.
    pub ip: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct VerifiedKey {
    pub id: Uuid,
    pub owner_id: String,
    pub scopes: Vec<String>,
    pub expires_at: Option<DateTime<Utc>>,
    /// Set while a rotated key is in its grace period: when it stops working.
    pub sunset: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct VerifiedRateLimit {
    pub limit: u64,
    pub remaining: u64,
    pub reset: u64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct VerifyResponse {
    pub valid: bool,
    /// `ok`, or the rejection code the proxy would answer with.
    pub code: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<VerifiedKey>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<VerifiedRateLimit>,
    /// Seconds until a rate-limited key may try again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub required_scopes: Option<Vec<String>>,
    /// The credit balance after this call (keys or owners with credits).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credits_remaining: Option<i64>,
}

#[utoipa::path(post, path = "/v1/verify", tag = "verify", request_body = VerifyRequest,
    responses((status = 200, body = VerifyResponse), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn verify(
    State(s): State<Arc<AdminState>>,
    ApiJson(req): ApiJson<VerifyRequest>,
) -> Result<Json<VerifyResponse>, ApiError> {
    let started = std::time::Instant::now();
    let gate = &s.proxy.gate;
    let (ip, mut scopes) = checked(&req)?;
    let routing = s.proxy.routing.load_full();
    let route = match req.route.as_deref() {
        Some(name) => match routing.by_name(name) {
            Some(r) => Some(routing.route(r)),
            None => return Ok(Json(refused(Rejection::new(Outcome::RouteNotFound), None))),
        },
        None => None,
    };
    if let Some(r) = route {
        scopes.extend(r.cfg.scopes.iter().cloned());
    }
    // The proxy's own decision; it refuses malformed and over-long keys before hashing.
    let attempt = Attempt {
        key: &req.key,
        route,
        scopes: &scopes,
        client_ip: ip,
    };
    let d = gate.decide(&attempt).await;
    let outcome = d.outcome();
    let mut resp = match (&d.verdict, &d.key) {
        (Ok(()), Some(entry)) => VerifyResponse {
            valid: true,
            code: Outcome::Ok.as_str().into(),
            key: Some(describe(entry)),
            rate_limit: d.rate.as_ref().map(|s| VerifiedRateLimit {
                limit: s.limit,
                remaining: s.remaining,
                reset: s.reset_secs,
            }),
            retry_after: None,
            required_scopes: None,
            credits_remaining: None,
        },
        (Err(rejection), key) => refused(rejection.clone(), key.as_deref()),
        (Ok(()), None) => refused(Rejection::new(Outcome::InvalidKey), None),
    };
    resp.credits_remaining = d.credits_remaining;
    if let Some(usage) = &s.proxy.usage {
        let request_id = super::error::current_request_id();
        let served = Served {
            request_id: &request_id,
            ts_ms: s.proxy.clock.now_ms(),
            method: "VERIFY",
            status: 200,
            latency_us: started.elapsed().as_micros() as u64,
            upstream_latency_us: None,
            bytes_in: 0,
            bytes_out: 0,
            client_ip: ip,
        };
        let mut record = gate.usage_record(d.key.as_deref(), route, outcome, served);
        if let Some(debit) = &d.debit {
            (record.credits, record.charged_to) = (debit.reserved, Some(debit.charged_to.clone()));
        }
        usage.record(record);
    }
    Ok(Json(resp))
}

/// The request's client IP and scopes, each checked (422 with its field).
fn checked(req: &VerifyRequest) -> Result<(Option<IpAddr>, Vec<String>), ApiError> {
    if req.key.is_empty() {
        return Err(ApiError::field("key", "required"));
    }
    let ip = match req.ip.as_deref() {
        Some(ip) => Some(
            ip.parse::<IpAddr>()
                .map(|a| a.to_canonical())
                .map_err(|_| ApiError::field("ip", "not an IPv4 or IPv6 address"))?,
        ),
        None => None,
    };
    let scopes = req.scopes.clone().unwrap_or_default();
    for (i, sc) in scopes.iter().enumerate() {
        if let Err(e) = scope::validate(sc, false) {
            return Err(ApiError::field(&format!("scopes[{i}]"), e.to_string()));
        }
    }
    Ok((ip, scopes))
}

fn describe(k: &crate::keys::KeyEntry) -> VerifiedKey {
    VerifiedKey {
        id: k.id,
        owner_id: k.owner_id().to_string(),
        scopes: k.scopes().iter().map(|s| s.to_string()).collect(),
        expires_at: k.expires_at,
        sunset: k.deprecation.as_ref().map(|d| d.sunset),
    }
}

fn refused(r: Rejection, entry: Option<&crate::keys::KeyEntry>) -> VerifyResponse {
    let (retry_after, required_scopes) = match r.detail {
        Detail::RateLimited { retry_after, .. } | Detail::RetryAfter(retry_after) => {
            (Some(retry_after), None)
        }
        Detail::RequiredScopes(s) => (None, Some(s)),
        _ => (None, None),
    };
    VerifyResponse {
        valid: false,
        code: r.outcome.as_str().into(),
        key: entry.map(describe),
        rate_limit: None,
        retry_after,
        required_scopes,
        credits_remaining: None,
    }
}
