//! The proxy: the Pingora service (the whole request lifecycle, in
//! [`service`]), the policy it applies ([`policy`]), request context,
//! routing, upstreams, header hygiene and rejections.

mod charge;
pub mod ctx;
pub mod door;
pub mod headers;
pub mod listener;
pub mod policy;
pub mod reject;
mod rewind;
pub mod router;
pub mod routing;
pub mod scan;
pub(crate) mod service;
pub mod upstream;

use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::clock::Clock;
use crate::metrics::Metrics;
use crate::usage::UsageSink;
use policy::Gate;
use routing::Routing;
pub use service::Proxy;

/// Everything the request path reads, shared by all proxy threads.
pub struct ProxyState {
    pub gate: Gate,
    /// Routes, upstreams and their series: swapped whole by a reload.
    pub routing: ArcSwap<Routing>,
    pub metrics: Arc<Metrics>,
    pub usage: Option<UsageSink>,
    pub clock: Clock,
    /// The secret-scanning endpoint, when `[secret_scanning] enabled`.
    pub scanner: Option<Arc<crate::leak::Scanner>>,
}
