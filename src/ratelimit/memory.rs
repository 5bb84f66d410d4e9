//! In-process counters: the `memory` backend, and the per-instance fallback when
//! Redis is unavailable. Same algorithm as Redis; one lock per key makes the
//! multi-window check atomic.

use std::sync::Arc;

use parking_lot::Mutex;
use uuid::Uuid;

use super::decision::{Check, Counts, Scope, Span, Verdict, evaluate};
use super::window::Window;

#[derive(Debug, Clone, Copy)]
struct Slot {
    scope: Scope,
    window: Window,
    bucket: u64,
    curr: u64,
    prev: u64,
    /// When the slot's data is entirely stale (for cleanup), Unix ms.
    stale_at: u64,
}

impl Slot {
    fn counts(&self, span: &Span) -> Counts {
        match span.bucket.index {
            b if b == self.bucket => Counts {
                curr: self.curr,
                prev: self.prev,
            },
            b if b == self.bucket + 1 => Counts {
                curr: 0,
                prev: self.curr,
            },
            _ => Counts::default(),
        }
    }

    fn count(&mut self, span: &Span) {
        let c = self.counts(span);
        self.bucket = span.bucket.index;
        self.curr = c.curr + 1;
        self.prev = c.prev;
        self.stale_at = span.bucket.end_ms() + span.bucket.len_ms;
    }
}

#[derive(Default)]
struct KeyCounters {
    slots: Vec<Slot>,
}

impl KeyCounters {
    fn slot(&mut self, check: &Check, span: &Span) -> &mut Slot {
        let i = match self
            .slots
            .iter()
            .position(|s| s.scope == check.scope && s.window == check.window)
        {
            Some(i) => i,
            None => {
                self.slots.push(Slot {
                    scope: check.scope,
                    window: check.window,
                    bucket: span.bucket.index,
                    curr: 0,
                    prev: 0,
                    stale_at: 0,
                });
                self.slots.len() - 1
            }
        };
        &mut self.slots[i]
    }
}

#[derive(Default)]
pub struct MemoryLimiter {
    keys: papaya::HashMap<Uuid, Arc<Mutex<KeyCounters>>>,
}

impl MemoryLimiter {
    /// Decides and, when allowed, counts the request in every window.
    pub fn check(&self, id: Uuid, checks: &[Check], spans: &[Span]) -> Verdict {
        let entry = self
            .keys
            .pin()
            .get_or_insert_with(id, Default::default)
            .clone();
        let mut k = entry.lock();
        let counts: Vec<Counts> = checks
            .iter()
            .zip(spans)
            .map(|(c, s)| k.slot(c, s).counts(s))
            .collect();
        let verdict = evaluate(checks, spans, &counts);
        if verdict.allowed {
            for (c, s) in checks.iter().zip(spans) {
                k.slot(c, s).count(s);
            }
        }
        verdict
    }

    /// Drops keys whose counters no longer matter.
    pub fn sweep(&self, now_ms: u64) -> usize {
        let map = self.keys.pin();
        let stale: Vec<Uuid> = map
            .iter()
            .filter(|(_, v)| v.lock().slots.iter().all(|s| s.stale_at <= now_ms))
            .map(|(k, _)| *k)
            .collect();
        for k in &stale {
            map.remove(k);
        }
        stale.len()
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ratelimit::decision::plan;
    use crate::ratelimit::window::Limits;
    use crate::routes::RouteId;

    fn spans(checks: &[Check], now: u64) -> Vec<Span> {
        checks.iter().map(|c| Span::at(c.window, now)).collect()
    }

    #[test]
    fn counts_all_windows_or_none() {
        let m = MemoryLimiter::default();
        let id = Uuid::from_u128(1);
        let limits = Limits {
            second: Some(100),
            minute: Some(3),
            hour: Some(100),
            ..Limits::default()
        };
        let checks = plan(&limits, RouteId(0), &Limits::default());
        let now = 10 * 3_600_000 + 5;
        for _ in 0..3 {
            assert!(m.check(id, &checks, &spans(&checks, now)).allowed);
        }
        for _ in 0..5 {
            assert!(!m.check(id, &checks, &spans(&checks, now)).allowed);
        }
        let k = m.keys.pin().get(&id).cloned().expect("entry");
        let counts: Vec<u64> = k.lock().slots.iter().map(|s| s.curr).collect();
        assert_eq!(
            counts,
            vec![3, 3, 3],
            "rejected requests were not counted anywhere"
        );
    }

    #[test]
    fn route_caps_are_separate_per_route() {
        let m = MemoryLimiter::default();
        let id = Uuid::from_u128(2);
        let cap = Limits {
            second: Some(1),
            ..Limits::default()
        };
        let r0 = plan(&Limits::default(), RouteId(0), &cap);
        let r1 = plan(&Limits::default(), RouteId(1), &cap);
        let now = 5_000;
        assert!(m.check(id, &r0, &spans(&r0, now)).allowed);
        assert!(!m.check(id, &r0, &spans(&r0, now)).allowed);
        assert!(m.check(id, &r1, &spans(&r1, now)).allowed);
    }

    #[test]
    fn sweep_forgets_old_keys() {
        let m = MemoryLimiter::default();
        let checks = plan(
            &Limits {
                second: Some(5),
                ..Limits::default()
            },
            RouteId(0),
            &Limits::default(),
        );
        m.check(Uuid::from_u128(3), &checks, &spans(&checks, 1_000));
        assert_eq!(m.sweep(2_500), 0);
        assert_eq!(m.sweep(3_000), 1);
        assert!(m.is_empty());
    }
}
