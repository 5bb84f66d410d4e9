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

use crate::metrics::Metrics;
use crate::outcome::Rejection;
use crate::ratelimit::Limiter;
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
}

impl ProxyState {
    /// Rate limits for an authenticated request (public routes have no key to limit).
    pub async fn limit(&self, ctx: &mut RequestCtx) -> Result<(), Rejection> {
        let (Some(key), Some(route)) = (&ctx.key, ctx.route) else {
            return Ok(());
        };
        match self.limiter.check(key, route).await {
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
        Ok(())
    }

    /// Records a finished request.
    pub fn finish(&self, _session: &Session, ctx: &RequestCtx) {
        self.metrics
            .request(ctx.route, ctx.outcome, ctx.start.elapsed().as_secs_f64());
    }
}
