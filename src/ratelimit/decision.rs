//! The rate-limit decision. Pure: counts and the time come in, a verdict comes out.
//!
//! Algorithm: a **sliding-window counter** for `second`, `minute`, `hour` and
//! `day`. Each window keeps a count for its current fixed bucket and the one
//! before; the number of requests in the last window-length is estimated as
//! `prev × (1 − elapsed/len) + curr`. A request is admitted when the estimate
//! plus one stays within the limit. `month` is a **fixed calendar month** (UTC):
//! only the current bucket counts, as for a monthly quota.
//!
//! Accuracy: within any one bucket no window admits more than its limit. Over an
//! arbitrary sliding interval the estimate assumes the previous bucket's requests
//! were spread evenly; the worst case (all of them at its very end) admits up to
//! `limit × (1 + f)` in the trailing window, `f` being how far into the current
//! bucket we are; typical traffic stays within a fraction of a percent.
//!
//! The same arithmetic, in the same order, runs in Redis's Lua (IEEE doubles
//! both sides), so the memory and Redis backends decide identically.

use super::window::{Bucket, Window};

/// Which limit a check belongs to: the key's own, a route's per-key cap (or
/// its override), or the key's owner's (shared by all the owner's keys).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    Key,
    /// A route's per-key cap (by the route's stable id).
    Route(crate::routes::RouteId),
    Owner,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Check {
    pub scope: Scope,
    pub window: Window,
    pub limit: u64,
}

/// Where `now` falls in a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub bucket: Bucket,
    pub elapsed_ms: u64,
    pub sliding: bool,
}

impl Span {
    pub fn at(window: Window, now_ms: u64) -> Span {
        let bucket = window.bucket(now_ms);
        Span {
            bucket,
            elapsed_ms: now_ms.saturating_sub(bucket.start_ms),
            sliding: window != Window::Month,
        }
    }

    /// Milliseconds until the current bucket ends.
    pub fn left_ms(&self) -> u64 {
        self.bucket.len_ms.saturating_sub(self.elapsed_ms)
    }
}

/// Requests counted in a window's current and previous bucket.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub curr: u64,
    pub prev: u64,
}

pub fn estimate(span: &Span, c: Counts) -> f64 {
    if !span.sliding {
        return c.curr as f64;
    }
    let len = span.bucket.len_ms as f64;
    c.prev as f64 * ((len - span.elapsed_ms as f64) / len) + c.curr as f64
}

pub fn admits(limit: u64, est: f64) -> bool {
    est + 1.0 <= limit as f64
}

/// How long until one more request would be admitted, with no other traffic.
/// Never early: a request after this wait is admitted (if nothing else came).
pub fn retry_after_ms(check: &Check, span: &Span, c: Counts) -> u64 {
    if !span.sliding || check.limit == 0 {
        // A zero limit (only reachable from a hand-edited row) never admits:
        // answer with the bucket's end rather than an infinite wait.
        return span.left_ms().max(1);
    }
    let limit = check.limit as f64;
    let len = span.bucket.len_ms as f64;
    let wait = if (c.curr as f64) + 1.0 <= limit {
        // Only the previous bucket's weight is in the way: wait for it to decay.
        let target = len - (limit - c.curr as f64 - 1.0) * len / c.prev.max(1) as f64;
        target - span.elapsed_ms as f64
    } else {
        // The current bucket alone is full: into the next bucket, until its weight decays.
        let g = len - (limit - 1.0) * len / c.curr as f64;
        span.left_ms() as f64 + g.max(0.0)
    };
    wait.ceil().max(1.0) as u64
}

/// The state of one window after a decision, for the response headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowStatus {
    pub check: Check,
    pub remaining: u64,
    /// Seconds until the current bucket ends.
    pub reset_secs: u64,
    /// The window's length in seconds (the calendar month's actual length).
    pub window_secs: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub allowed: bool,
    /// Every window after this request, in plan order.
    pub windows: Vec<WindowStatus>,
    /// When rejected: the window that waits longest, and for how long.
    pub rejected_by: Option<(usize, u64)>,
}

impl Verdict {
    /// The window closest to exhaustion (fewest remaining; ties: the longer wait).
    pub fn closest(&self) -> Option<&WindowStatus> {
        closest(&self.windows)
    }
}

/// The window closest to exhaustion (fewest remaining; ties: the longer wait):
/// the one the `X-RateLimit-*` and `RateLimit` headers describe.
pub fn closest(windows: &[WindowStatus]) -> Option<&WindowStatus> {
    windows.iter().min_by(|a, b| {
        a.remaining
            .cmp(&b.remaining)
            .then(b.reset_secs.cmp(&a.reset_secs))
    })
}

/// Decides a request from the counts before it. `allowed` means every window
/// admits it; the caller then counts it in every window (or none).
pub fn evaluate(checks: &[Check], spans: &[Span], counts: &[Counts]) -> Verdict {
    let mut allowed = true;
    let mut rejected_by: Option<(usize, u64)> = None;
    for (i, ((check, span), c)) in checks.iter().zip(spans).zip(counts).enumerate() {
        if !admits(check.limit, estimate(span, *c)) {
            allowed = false;
            let wait = retry_after_ms(check, span, *c);
            if rejected_by.is_none_or(|(_, w)| wait > w) {
                rejected_by = Some((i, wait));
            }
        }
    }
    let windows = statuses(checks, spans, counts, allowed);
    Verdict {
        allowed,
        windows,
        rejected_by,
    }
}

/// Each window's state after a decision; `counted`: the request counted.
pub fn statuses(
    checks: &[Check],
    spans: &[Span],
    counts: &[Counts],
    counted: bool,
) -> Vec<WindowStatus> {
    checks
        .iter()
        .zip(spans)
        .zip(counts)
        .map(|((check, span), c)| {
            let after = if counted {
                Counts {
                    curr: c.curr + 1,
                    prev: c.prev,
                }
            } else {
                *c
            };
            let remaining = (check.limit as f64 - estimate(span, after))
                .floor()
                .max(0.0) as u64;
            WindowStatus {
                check: *check,
                remaining,
                reset_secs: span.left_ms().div_ceil(1000),
                window_secs: span.bucket.len_ms / 1000,
            }
        })
        .collect()
}

/// The checks for one request: the key's own windows, the route's per-key
/// caps, then the owner's shared windows.
pub fn plan(
    key: &super::window::Limits,
    route: crate::routes::RouteId,
    route_caps: &super::window::Limits,
    owner: &super::window::Limits,
) -> Vec<Check> {
    let mut checks = Vec::with_capacity(15);
    checks.extend(key.iter().map(|(window, limit)| Check {
        scope: Scope::Key,
        window,
        limit,
    }));
    checks.extend(route_caps.iter().map(|(window, limit)| Check {
        scope: Scope::Route(route),
        window,
        limit,
    }));
    checks.extend(owner.iter().map(|(window, limit)| Check {
        scope: Scope::Owner,
        window,
        limit,
    }));
    checks
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(window: Window, limit: u64) -> Check {
        Check {
            scope: Scope::Key,
            window,
            limit,
        }
    }

    #[test]
    fn fresh_window_admits_exactly_the_limit() {
        let c = [check(Window::Minute, 3)];
        let s = [Span::at(Window::Minute, 60_000 * 10 + 5_000)];
        for n in 0..3 {
            assert!(evaluate(&c, &s, &[Counts { curr: n, prev: 0 }]).allowed);
        }
        let v = evaluate(&c, &s, &[Counts { curr: 3, prev: 0 }]);
        assert!(!v.allowed);
        assert_eq!(v.windows[0].remaining, 0);
    }

    #[test]
    fn previous_bucket_decays() {
        let c = check(Window::Minute, 10);
        // 10 requests in the previous minute; 30 s into this one the estimate is 5.
        let s = Span::at(Window::Minute, 60_000 * 11 + 30_000);
        let counts = Counts { curr: 0, prev: 10 };
        assert!((estimate(&s, counts) - 5.0).abs() < 1e-9);
        assert!(evaluate(&[c], &[s], &[Counts { curr: 4, prev: 10 }]).allowed);
        assert!(!evaluate(&[c], &[s], &[Counts { curr: 5, prev: 10 }]).allowed);
    }

    #[test]
    fn a_zero_limit_refuses_with_a_finite_wait() {
        let c = check(Window::Second, 0);
        let s = Span::at(Window::Second, 1_000 * 50 + 100);
        let v = evaluate(&[c], &[s], &[Counts { curr: 0, prev: 0 }]);
        assert!(!v.allowed);
        assert_eq!(retry_after_ms(&c, &s, Counts { curr: 0, prev: 0 }), 900);
    }

    #[test]
    fn retry_after_is_when_the_next_request_fits() {
        let c = check(Window::Second, 2);
        let s = Span::at(Window::Second, 1_000 * 50 + 100);
        let counts = Counts { curr: 2, prev: 0 };
        let wait = retry_after_ms(&c, &s, counts);
        // Next bucket (900 ms away), then its weight 2×(1−g) must fall to 1: g = 0.5.
        assert_eq!(wait, 900 + 500);
        let later = Span::at(Window::Second, 1_000 * 50 + 100 + wait);
        assert!(admits(2, estimate(&later, Counts { curr: 0, prev: 2 })));
        let earlier = Span::at(Window::Second, 1_000 * 50 + 100 + wait - 2);
        assert!(!admits(2, estimate(&earlier, Counts { curr: 0, prev: 2 })));
    }

    #[test]
    fn month_is_a_fixed_quota_until_month_end() {
        let c = check(Window::Month, 5);
        let s = Span::at(Window::Month, 1_706_745_599_000); // 2024-01-31T23:59:59Z
        let v = evaluate(&[c], &[s], &[Counts { curr: 5, prev: 999 }]);
        assert!(
            !v.allowed,
            "previous months never count, the current one is full"
        );
        assert_eq!(v.rejected_by, Some((0, 1_000)));
        assert!(evaluate(&[c], &[s], &[Counts { curr: 4, prev: 999 }]).allowed);
    }

    #[test]
    fn one_full_window_rejects_the_whole_request() {
        let checks = [
            check(Window::Second, 100),
            check(Window::Minute, 5),
            check(Window::Day, 100),
        ];
        let now = 86_400_000 * 3 + 61_000;
        let spans = checks.map(|c| Span::at(c.window, now));
        let v = evaluate(
            &checks,
            &spans,
            &[
                Counts::default(),
                Counts { curr: 5, prev: 0 },
                Counts::default(),
            ],
        );
        assert!(!v.allowed);
        assert_eq!(v.rejected_by.map(|r| r.0), Some(1));
        assert_eq!(v.closest().map(|w| w.check.window), Some(Window::Minute));
        // Nothing is counted on rejection: remaining reflects the counts as they were.
        assert_eq!(v.windows[0].remaining, 100);
    }

    #[test]
    fn closest_to_exhaustion_is_reported() {
        let checks = [check(Window::Second, 10), check(Window::Hour, 3)];
        let spans = checks.map(|c| Span::at(c.window, 7_200_000 + 10));
        let v = evaluate(
            &checks,
            &spans,
            &[Counts { curr: 1, prev: 0 }, Counts { curr: 1, prev: 0 }],
        );
        assert!(v.allowed);
        let w = v.closest().expect("a window");
        assert_eq!((w.check.window, w.remaining), (Window::Hour, 1));
        assert_eq!(w.window_secs, 3600);
    }
}
