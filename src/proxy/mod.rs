//! The proxy: the Pingora service (the whole request lifecycle, in
//! [`service`]), the policy it applies ([`policy`]), request context,
//! routing, upstreams, header hygiene and rejections.

mod charge;
pub mod ctx;
pub mod headers;
pub mod listener;
pub mod policy;
pub mod reject;
pub mod router;
mod service;
pub mod upstream;

use std::sync::Arc;

use crate::clock::Clock;
use crate::metrics::Metrics;
use crate::usage::UsageSink;
use policy::Gate;
pub use service::Proxy;
use upstream::UpstreamPool;

/// Everything the request path reads, shared by all proxy threads.
pub struct ProxyState {
    pub gate: Gate,
    pub upstreams: Vec<UpstreamPool>,
    pub metrics: Arc<Metrics>,
    pub usage: Option<UsageSink>,
    pub clock: Clock,
}
