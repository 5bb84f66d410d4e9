//! What a reload swaps: the routes, their router, their upstreams and their
//! metric series, as one immutable snapshot. A request takes the snapshot
//! when it starts and keeps it to the end, so in-flight requests finish on
//! the configuration they started with.

use std::sync::Arc;

use http::Method;
use pingora_http::RequestHeader;

use super::router::{self, Router};
use super::upstream::{ResolveError, UpstreamPool};
use crate::config::{Config, RouteConfig};
use crate::metrics::{Metrics, RouteMetrics};
use crate::outcome::{Outcome, Rejection};
use crate::ratelimit::{RouteCost, RouteLimits};
use crate::routes::{RouteId, RouteIds};

/// One configured route.
pub struct Route {
    pub id: RouteId,
    /// Shared into usage records without copying.
    pub name: Arc<str>,
    pub cfg: RouteConfig,
    pub metrics: RouteMetrics,
}

impl Route {
    pub fn limits(&self) -> RouteLimits<'_> {
        RouteLimits {
            id: self.id,
            name: &self.name,
            caps: &self.cfg.rate_limits,
            cost: RouteCost {
                cost: i64::try_from(self.cfg.cost).unwrap_or(i64::MAX),
                post_paid: self.cfg.cost_header.is_some(),
            },
        }
    }
}

pub struct Routing {
    router: Router,
    routes: Vec<Route>,
    upstreams: Vec<UpstreamPool>,
}

impl Routing {
    /// Resolves the upstreams (DNS happens here) and makes each route's series.
    pub fn build(
        config: &Config,
        ids: &RouteIds,
        metrics: &Metrics,
    ) -> Result<Routing, ResolveError> {
        let upstreams = config
            .upstreams
            .iter()
            .map(UpstreamPool::new)
            .collect::<Result<Vec<_>, _>>()?;
        let routes = config
            .routes
            .iter()
            .map(|r| Route {
                id: ids.id(&r.name),
                name: Arc::from(r.name.as_str()),
                cfg: r.clone(),
                metrics: metrics.route(&r.name),
            })
            .collect();
        Ok(Routing {
            router: Router::new(&config.routes),
            routes,
            upstreams,
        })
    }

    pub fn route(&self, i: usize) -> &Route {
        &self.routes[i]
    }

    pub fn get(&self, i: Option<usize>) -> Option<&Route> {
        i.and_then(|i| self.routes.get(i))
    }

    pub fn by_name(&self, name: &str) -> Option<usize> {
        self.routes.iter().position(|r| &*r.name == name)
    }

    pub fn upstream(&self, i: usize) -> &UpstreamPool {
        &self.upstreams[i]
    }

    /// The route for this request, or why there is none.
    pub fn find(&self, req: &RequestHeader) -> Result<usize, Rejection> {
        let path = req.uri.path();
        if !router::path_is_routable(path) {
            return Err(Rejection::new(Outcome::InvalidRequest));
        }
        let host = req
            .headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| req.uri.host());
        self.router
            .route(host, path, &req.method)
            .ok_or_else(|| Rejection::new(Outcome::RouteNotFound))
    }

    /// For benchmarks and tests: the route of a path.
    pub fn find_path(&self, host: Option<&str>, path: &str, method: &Method) -> Option<usize> {
        self.router.route(host, path, method)
    }
}
