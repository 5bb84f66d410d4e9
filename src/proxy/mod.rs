//! The proxy: Pingora service, request context, policy, routing, upstreams,
//! header hygiene and rejections.

pub mod ctx;
pub mod headers;
pub mod listener;
pub mod policy;
pub mod reject;
pub mod router;
mod service;
pub mod upstream;

use std::sync::Arc;

use pingora_http::ResponseHeader;
use pingora_proxy::Session;

use crate::clock::Clock;
use crate::metrics::Metrics;
use crate::outcome::Rejection;
use crate::ratelimit::Limiter;
use crate::usage::{UsageRecord, UsageSink};
use ctx::RequestCtx;
use policy::Policy;
pub use service::Proxy;
use upstream::UpstreamPool;

/// Everything the request path reads, shared by all proxy threads.
pub struct ProxyState {
    pub policy: Policy,
    pub upstreams: Vec<UpstreamPool>,
    pub metrics: Arc<Metrics>,
    pub limiter: Arc<Limiter>,
    pub usage: Option<UsageSink>,
    /// Route names, shared into usage records without copying.
    pub route_names: Vec<Arc<str>>,
    pub clock: Clock,
}

impl ProxyState {
    /// Rate limits for an authenticated request (public routes have no key to limit).
    pub async fn limit(&self, ctx: &mut RequestCtx) -> Result<(), Rejection> {
        let (Some(key), Some(route)) = (&ctx.key, ctx.route) else {
            return Ok(());
        };
        match self.limiter.check(key, Some(route)).await {
            Ok(status) => {
                ctx.rate = status;
                Ok(())
            }
            Err((rejection, status)) => {
                ctx.rate = status;
                Err(rejection)
            }
        }
    }

    /// Headers keygate adds to every response it sends or relays.
    pub fn response_headers(
        &self,
        resp: &mut ResponseHeader,
        ctx: &RequestCtx,
    ) -> pingora_error::Result<()> {
        if let Some(r) = &ctx.rate {
            resp.insert_header("x-ratelimit-limit", r.limit)?;
            resp.insert_header("x-ratelimit-remaining", r.remaining)?;
            resp.insert_header("x-ratelimit-reset", r.reset_secs)?;
            resp.insert_header("ratelimit-policy", r.policy.as_str())?;
            resp.insert_header("ratelimit", r.current.as_str())?;
        }
        // A rotated key in its grace period: tell the client (RFC 9745, RFC 8594).
        if let Some(d) = ctx.key.as_ref().and_then(|k| k.deprecation.as_deref()) {
            resp.insert_header("deprecation", format!("@{}", d.since.timestamp()))?;
            resp.insert_header(
                "sunset",
                d.sunset.format("%a, %d %b %Y %H:%M:%S GMT").to_string(),
            )?;
        }
        Ok(())
    }

    /// Records a finished request: metrics now, the usage record via the queue.
    pub fn finish(&self, session: &Session, ctx: &mut RequestCtx) {
        let elapsed = ctx.start.elapsed();
        self.metrics
            .request(ctx.route, ctx.outcome, elapsed.as_secs_f64());
        let Some(usage) = &self.usage else { return };
        let key = ctx.key.as_ref();
        usage.record(UsageRecord {
            id: crate::ids::uuid_v7(),
            request_id: ctx.request_id().to_owned(),
            ts_ms: ctx.start_ms,
            key_id: key.map(|k| k.id),
            owner_id: key.map(|k| k.owner_id().clone()),
            route: ctx.route.and_then(|r| self.route_names.get(r).cloned()),
            method: session.req_header().method.as_str().to_owned(),
            status: session.response_written().map_or(0, |h| h.status.as_u16()),
            outcome: ctx.outcome,
            latency_us: elapsed.as_micros() as u64,
            upstream_latency_us: ctx.upstream_latency_us(),
            bytes_in: session.body_bytes_read() as u64,
            bytes_out: session.body_bytes_sent() as u64,
            client_ip: ctx.client_ip,
            deprecated_key: key.is_some_and(|k| k.deprecation.is_some()),
        });
    }
}
