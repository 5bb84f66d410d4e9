//! `[[route]]`: which requests go to which upstream, and what a key needs
//! to pass.

use std::collections::{BTreeMap, HashMap, HashSet};

use http::Method;

use super::checker::Checker;
use crate::auth::scope;
use crate::config::file::RouteSection;
use crate::config::{AuthMode, RouteConfig, UpstreamConfig};
use crate::ratelimit::window::{self, Limits, Window};

/// Without `path_prefix`, a route matches every path.
const PATH_PREFIX: &str = "/";

impl Checker {
    pub(super) fn routes(
        &mut self,
        routes: Vec<RouteSection>,
        ups: &[UpstreamConfig],
    ) -> Vec<RouteConfig> {
        let by_name: HashMap<&str, usize> = ups
            .iter()
            .enumerate()
            .map(|(i, u)| (u.name.as_str(), i))
            .collect();
        let mut seen = HashSet::new();
        routes
            .into_iter()
            .enumerate()
            .map(|(i, r)| self.route(&format!("route[{i}]"), r, &by_name, &mut seen))
            .collect()
    }

    fn route(
        &mut self,
        p: &str,
        r: RouteSection,
        upstreams: &HashMap<&str, usize>,
        seen: &mut HashSet<String>,
    ) -> RouteConfig {
        if r.name.is_empty() {
            self.problem(format!("{p}.name"), "required");
        } else if !seen.insert(r.name.clone()) {
            self.problem(
                format!("{p}.name"),
                format!("duplicate route name {:?}", r.name),
            );
        }
        let upstream = self.route_upstream(p, &r.upstream, upstreams);
        let path_prefix = r.path_prefix.unwrap_or_else(|| PATH_PREFIX.into());
        if !path_prefix.starts_with('/') {
            self.problem(
                format!("{p}.path_prefix"),
                format!("{path_prefix:?} must start with '/'"),
            );
        }
        let host = r.host.map(|h| h.to_ascii_lowercase());
        if let Some(h) = &host {
            if h.is_empty() || h.contains(['/', ' ', ':']) {
                self.problem(
                    format!("{p}.host"),
                    format!("{h:?} must be a bare host name"),
                );
            }
        }
        let methods = self.methods(p, &r.methods);
        let auth = self
            .parsed(&format!("{p}.auth"), r.auth)
            .unwrap_or_default();
        for (j, s) in r.scopes.iter().enumerate() {
            if let Err(e) = scope::validate(s, false) {
                self.problem(format!("{p}.scopes[{j}]"), e.to_string());
            }
        }
        let rate_limits = self.rate_limits(p, &r.rate_limits);
        if auth == AuthMode::Public && (!r.scopes.is_empty() || !rate_limits.is_empty()) {
            self.problem(
                format!("{p}.auth"),
                "a public route has no key, so it cannot have scopes or per-key rate_limits",
            );
        }
        let (cost, cost_header) = self.route_cost(p, r.cost, r.cost_header.as_deref(), auth);
        RouteConfig {
            name: r.name,
            host,
            path_prefix,
            methods,
            upstream,
            auth,
            scopes: r.scopes,
            rate_limits,
            cost,
            cost_header,
        }
    }

    /// The upstream's index (0 after reporting a missing one).
    fn route_upstream(&mut self, p: &str, name: &str, upstreams: &HashMap<&str, usize>) -> usize {
        match upstreams.get(name) {
            Some(&idx) => idx,
            None if name.is_empty() => {
                self.problem(format!("{p}.upstream"), "required");
                0
            }
            None => {
                self.problem(
                    format!("{p}.upstream"),
                    format!("no upstream named {name:?}"),
                );
                0
            }
        }
    }

    fn methods(&mut self, p: &str, methods: &[String]) -> Vec<Method> {
        methods
            .iter()
            .enumerate()
            .filter_map(
                |(j, m)| match Method::from_bytes(m.to_ascii_uppercase().as_bytes()) {
                    Ok(m) => Some(m),
                    Err(_) => {
                        self.problem(
                            format!("{p}.methods[{j}]"),
                            format!("{m:?} is not an HTTP method"),
                        );
                        None
                    }
                },
            )
            .collect()
    }

    fn rate_limits(&mut self, p: &str, limits: &BTreeMap<String, u64>) -> Limits {
        let mut rate_limits = Limits::default();
        for (name, limit) in limits {
            match Window::parse(name) {
                Some(_) if !window::valid_limit(*limit) => {
                    self.problem(format!("{p}.rate_limits.{name}"), window::LIMIT_RANGE);
                }
                Some(w) => rate_limits.set(w, Some(*limit)),
                None => self.problem(
                    format!("{p}.rate_limits.{name}"),
                    "unknown window; use second, minute, hour, day or month",
                ),
            }
        }
        rate_limits
    }
}
