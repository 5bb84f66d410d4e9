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
use ctx::RequestCtx;
use policy::Policy;
pub use service::Proxy;
use upstream::UpstreamPool;

/// Everything the request path reads, shared by all proxy threads.
pub struct ProxyState {
    pub policy: Policy,
    pub upstreams: Vec<UpstreamPool>,
    pub metrics: Arc<Metrics>,
}

impl ProxyState {
    /// Rate limits for an admitted request.
    pub async fn limit(&self, _ctx: &mut RequestCtx) -> Result<(), Rejection> {
        Ok(())
    }

    /// Headers keygate adds to every response it sends or relays.
    pub fn response_headers(
        &self,
        _resp: &mut ResponseHeader,
        _ctx: &RequestCtx,
    ) -> pingora_error::Result<()> {
        Ok(())
    }

    /// Records a finished request.
    pub fn finish(&self, _session: &Session, ctx: &RequestCtx) {
        self.metrics
            .request(ctx.route, ctx.outcome, ctx.start.elapsed().as_secs_f64());
    }
}
