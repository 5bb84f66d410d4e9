//! Per-request state carried across the proxy hooks.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use prometheus::IntGauge;

use super::upstream::Tried;
use crate::keys::KeyEntry;
use crate::outcome::Outcome;
use crate::ratelimit::RateStatus;

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
    pub request_id: String,
    /// The TCP peer.
    pub peer_ip: Option<IpAddr>,
    /// The client per the trusted-proxy rule.
    pub client_ip: Option<IpAddr>,
    pub peer_trusted: bool,
    /// Index of the matched route.
    pub route: Option<usize>,
    /// The authenticated key, on `auth = "required"` routes.
    pub key: Option<Arc<KeyEntry>>,
    /// The key arrived in `Authorization: Bearer` rather than the key header.
    pub key_from_bearer: bool,
    /// Rate-limit state for the response headers.
    pub rate: Option<RateStatus>,
    pub outcome: Outcome,
    /// When keygate finished its own work and handed the request upstream.
    pub policy_done: Option<Instant>,
    pub upstream: Option<usize>,
    pub server: Option<usize>,
    pub tried: Tried,
    pub upstream_connected: Option<Instant>,
    pub bytes_in: u64,
    _inflight: InflightGuard,
}

impl RequestCtx {
    pub fn new(inflight: &IntGauge) -> RequestCtx {
        RequestCtx {
            start: Instant::now(),
            request_id: String::new(),
            peer_ip: None,
            client_ip: None,
            peer_trusted: false,
            route: None,
            key: None,
            key_from_bearer: false,
            rate: None,
            outcome: Outcome::Ok,
            policy_done: None,
            upstream: None,
            server: None,
            tried: Tried::default(),
            upstream_connected: None,
            bytes_in: 0,
            _inflight: InflightGuard::new(inflight),
        }
    }
}
