//! Per-request state carried across the proxy hooks.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use prometheus::IntGauge;

use super::routing::Routing;
use super::upstream::Tried;
use crate::keys::KeyEntry;
use crate::outcome::Outcome;
use crate::ratelimit::{Debit, RateStatus};

/// Counts a request as in flight from its context's creation to its drop;
/// graceful shutdown waits for the count to reach zero.
pub struct InflightGuard(IntGauge);

impl InflightGuard {
    pub fn new(gauge: &IntGauge) -> InflightGuard {
        gauge.inc();
        InflightGuard(gauge.clone())
    }
}

impl Drop for InflightGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

pub struct RequestCtx {
    pub start: Instant,
    /// Kept as a header value: a client's id is reused without copying, ours
    /// is formatted once; both go upstream and back to the client.
    pub request_id: http::HeaderValue,
    /// The TCP peer.
    pub peer_ip: Option<IpAddr>,
    /// The client per the trusted-proxy rule.
    pub client_ip: Option<IpAddr>,
    pub peer_trusted: bool,
    /// The client's connection is TLS (for `X-Forwarded-Proto`).
    pub tls: bool,
    /// The configuration this request runs on, from start to end.
    pub routing: Arc<Routing>,
    /// Index of the matched route in [`Self::routing`].
    pub route: Option<usize>,
    /// The authenticated key, on `auth = "required"` routes.
    pub key: Option<Arc<KeyEntry>>,
    /// The key arrived in `Authorization: Bearer` rather than the key header.
    pub key_from_bearer: bool,
    /// Rate-limit state for the response headers.
    pub rate: Option<RateStatus>,
    /// The credit balance after this request, what it was charged, and the
    /// cost the upstream reported (post-paid routes).
    pub credits_remaining: Option<i64>,
    pub debit: Option<Debit>,
    pub reported_cost: Option<i64>,
    pub outcome: Outcome,
    /// When keygate finished its own work and handed the request upstream.
    pub policy_done: Option<Instant>,
    pub upstream: Option<usize>,
    pub server: Option<usize>,
    pub tried: Tried,
    /// Wall-clock start, Unix milliseconds (for the usage record).
    pub start_ms: i64,
    /// When the request was handed to the upstream, and when its response head came back.
    pub upstream_sent: Option<Instant>,
    pub upstream_answered: Option<Instant>,
    /// A secret-scanning report, answered by keygate: no usage record or
    /// request metrics.
    pub scan: bool,
    _inflight: InflightGuard,
}

impl RequestCtx {
    /// Microseconds the upstream took to answer with a response head.
    pub fn upstream_latency_us(&self) -> Option<u64> {
        match (self.upstream_sent, self.upstream_answered) {
            (Some(a), Some(b)) => Some(b.saturating_duration_since(a).as_micros() as u64),
            _ => None,
        }
    }

    /// The request id as text (sane ids are ASCII).
    pub fn request_id(&self) -> &str {
        self.request_id.to_str().unwrap_or("")
    }

    pub fn new(inflight: &IntGauge, routing: Arc<Routing>) -> RequestCtx {
        RequestCtx {
            start: Instant::now(),
            request_id: http::HeaderValue::from_static(""),
            peer_ip: None,
            client_ip: None,
            peer_trusted: false,
            tls: false,
            routing,
            route: None,
            key: None,
            key_from_bearer: false,
            rate: None,
            credits_remaining: None,
            debit: None,
            reported_cost: None,
            outcome: Outcome::Ok,
            policy_done: None,
            upstream: None,
            server: None,
            tried: Tried::default(),
            start_ms: 0,
            upstream_sent: None,
            upstream_answered: None,
            scan: false,
            _inflight: InflightGuard::new(inflight),
        }
    }
}
