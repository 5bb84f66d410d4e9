//! `route[].cost` and `route[].cost_header`: what a request on a route costs
//! in credits (kept apart from the rest of the route's checks).

use http::HeaderName;

use super::checker::Checker;
use crate::config::AuthMode;
use crate::credits::MAX_CREDITS;

/// Without `cost`, a request costs one credit (of a key or owner with credits).
const DEFAULT_COST: u64 = 1;

impl Checker {
    pub(super) fn route_cost(
        &mut self,
        p: &str,
        cost: Option<u64>,
        header: Option<&str>,
        auth: AuthMode,
    ) -> (u64, Option<HeaderName>) {
        if auth == AuthMode::Public && (cost.is_some() || header.is_some()) {
            self.problem(
                format!("{p}.auth"),
                "a public route has no key, so it cannot have a cost or cost_header",
            );
        }
        let cost = match cost {
            Some(c) if c > MAX_CREDITS.unsigned_abs() => {
                self.problem(format!("{p}.cost"), "must be 0 to 10^15");
                DEFAULT_COST
            }
            Some(c) => c,
            None => DEFAULT_COST,
        };
        let header = header.and_then(|h| match HeaderName::from_bytes(h.as_bytes()) {
            Ok(name) => Some(name),
            Err(_) => {
                self.problem(
                    format!("{p}.cost_header"),
                    format!("{h:?} is not a header name"),
                );
                None
            }
        });
        (cost, header)
    }
}
