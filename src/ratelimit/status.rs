//! The rate-limit state a response reports: `X-RateLimit-*` for the window
//! closest to exhaustion, and the IETF httpapi draft's `RateLimit-Policy`
//! (every window) and `RateLimit` (the closest one).

use std::fmt::Write;

use super::decision::{Check, Scope, WindowStatus, closest};

/// What the response headers say about rate limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateStatus {
    pub limit: u64,
    pub remaining: u64,
    pub reset_secs: u64,
    /// `RateLimit-Policy`: every window, IETF httpapi draft syntax.
    pub policy: String,
    /// `RateLimit`: the window closest to exhaustion.
    pub current: String,
}

/// Appends the policy's name: the window, prefixed by the route for caps.
fn write_policy_name(out: &mut String, c: &Check, route_name: &str) {
    match c.scope {
        Scope::Route(_) => {
            out.push_str(route_name);
            out.push('.');
        }
        Scope::Owner => out.push_str("owner."),
        Scope::Key => {}
    }
    out.push_str(c.window.as_str());
}

/// The header values, each built in one buffer (this runs per request).
/// `pick`: the window to report (the one that refused), else the closest.
pub(super) fn build(windows: &[WindowStatus], pick: Option<usize>, route_name: &str) -> RateStatus {
    let mut policy = String::with_capacity(32 * windows.len());
    for (i, w) in windows.iter().enumerate() {
        if i > 0 {
            policy.push_str(", ");
        }
        policy.push('"');
        write_policy_name(&mut policy, &w.check, route_name);
        let _ = write!(policy, "\";q={};w={}", w.check.limit, w.window_secs);
    }
    match pick
        .and_then(|i| windows.get(i))
        .or_else(|| closest(windows))
    {
        Some(w) => {
            let mut current = String::with_capacity(32);
            current.push('"');
            write_policy_name(&mut current, &w.check, route_name);
            let _ = write!(current, "\";r={};t={}", w.remaining, w.reset_secs);
            RateStatus {
                limit: w.check.limit,
                remaining: w.remaining,
                reset_secs: w.reset_secs,
                current,
                policy,
            }
        }
        None => RateStatus {
            limit: 0,
            remaining: 0,
            reset_secs: 0,
            policy,
            current: String::new(),
        },
    }
}
