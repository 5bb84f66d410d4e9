//! In-process counters: the `memory` backend, and the per-instance fallback when
//! Redis is unavailable. Same algorithm as Redis; one lock per key (and one
//! per owner, always taken after the key's) makes the multi-window check and
//! the credit debit atomic. Balances (embedded mode's credits) live in the
//! entry of their account and are never swept: they are rebuilt from the
//! ledger only at start.

use std::sync::Arc;

use parking_lot::Mutex;
use uuid::Uuid;

use super::decision::{Check, Counts, Scope, Span, Verdict, evaluate, statuses};
use super::window::Window;
use crate::credits::cell::{self, Ask, Cell};

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
    /// The account's balance, when this entry is a credit account.
    credit: Option<Cell>,
}

/// A request's credit debit, in the entry of `account` (the key's or the owner's id).
#[derive(Debug, Clone, Copy)]
pub struct CreditAsk {
    pub account: Uuid,
    pub ask: Ask,
    /// The ledger's recorded spending, when the balance must be rebuilt.
    pub seed: Option<i64>,
}

/// What the balance said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreditAnswer {
    /// Enough: `remaining` after this request's debit (if it was admitted).
    Ok {
        remaining: i64,
    },
    Exhausted {
        remaining: i64,
    },
    /// The balance is not here yet: call again with the seed.
    NeedSeed,
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
    fn entry(&self, id: Uuid) -> Arc<Mutex<KeyCounters>> {
        self.keys
            .pin()
            .get_or_insert_with(id, Default::default)
            .clone()
    }

    /// Decides and, when allowed, counts the request in every window.
    pub fn check(&self, id: Uuid, checks: &[Check], spans: &[Span]) -> Verdict {
        self.check_all(id, None, checks, spans, None).0
    }

    /// Decides on every window of the key (and, in `owner`'s entry, the
    /// owner's) and the credit balance; when all admit, counts the request in
    /// every window and debits the balance, else changes nothing.
    pub fn check_all(
        &self,
        id: Uuid,
        owner: Option<Uuid>,
        checks: &[Check],
        spans: &[Span],
        credit: Option<CreditAsk>,
    ) -> (Verdict, Option<CreditAnswer>) {
        let key_entry = self.entry(id);
        let owner_entry = owner.filter(|o| *o != id).map(|o| self.entry(o));
        let mut k = key_entry.lock();
        let mut o = owner_entry.as_ref().map(|e| e.lock());
        let counts: Vec<Counts> = checks
            .iter()
            .zip(spans)
            .map(|(c, s)| match (c.scope, o.as_mut()) {
                (Scope::Owner, Some(o)) => o.slot(c, s).counts(s),
                _ => k.slot(c, s).counts(s),
            })
            .collect();
        let mut verdict = evaluate(checks, spans, &counts);
        let mut answer = None;
        let mut cell = None;
        if let Some(ask) = &credit {
            let stored = match o.as_ref() {
                Some(o) if ask.account != id => o.credit,
                _ => k.credit,
            };
            let (a, c) = decide_credit(stored, ask);
            answer = Some(a);
            cell = c;
            if verdict.allowed && !matches!(a, CreditAnswer::Ok { .. }) {
                verdict.allowed = false;
                verdict.windows = statuses(checks, spans, &counts, false);
            }
        }
        if verdict.allowed {
            for (c, s) in checks.iter().zip(spans) {
                match (c.scope, o.as_mut()) {
                    (Scope::Owner, Some(o)) => o.slot(c, s).count(s),
                    _ => k.slot(c, s).count(s),
                }
            }
            if let (Some(ask), Some(mut c)) = (&credit, cell) {
                c.spent = c.spent.saturating_add(ask.ask.reserve);
                answer = Some(CreditAnswer::Ok {
                    remaining: c.remaining(),
                });
                match o.as_mut() {
                    Some(o) if ask.account != id => o.credit = Some(c),
                    _ => k.credit = Some(c),
                }
            }
        }
        (verdict, answer)
    }

    /// A post-paid correction of an account's balance (see [`cell::settle`]).
    pub fn settle(&self, account: Uuid, epoch: i64, delta: i64) {
        if let Some(e) = self.keys.pin().get(&account) {
            let mut e = e.lock();
            if let Some(c) = cell::settle(e.credit, epoch, delta) {
                e.credit = Some(c);
            }
        }
    }

    /// Drops keys whose counters no longer matter.
    pub fn sweep(&self, now_ms: u64) -> usize {
        let map = self.keys.pin();
        let stale: Vec<Uuid> = map
            .iter()
            .filter(|(_, v)| {
                let v = v.lock();
                v.credit.is_none() && v.slots.iter().all(|s| s.stale_at <= now_ms)
            })
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

/// The balance's answer, and the cell to store if the request is admitted.
fn decide_credit(stored: Option<Cell>, ask: &CreditAsk) -> (CreditAnswer, Option<Cell>) {
    match cell::current(stored, &ask.ask, ask.seed) {
        None => (CreditAnswer::NeedSeed, None),
        Some(c) if c.remaining() < ask.ask.need() => (
            CreditAnswer::Exhausted {
                remaining: c.remaining(),
            },
            None,
        ),
        Some(c) => (
            CreditAnswer::Ok {
                remaining: c.remaining(),
            },
            Some(c),
        ),
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
        let checks = plan(&limits, RouteId(0), &Limits::default(), &Limits::default());
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
        let none = Limits::default();
        let r0 = plan(&none, RouteId(0), &cap, &none);
        let r1 = plan(&none, RouteId(1), &cap, &none);
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
            &Limits::default(),
        );
        m.check(Uuid::from_u128(3), &checks, &spans(&checks, 1_000));
        assert_eq!(m.sweep(2_500), 0);
        assert_eq!(m.sweep(3_000), 1);
        assert!(m.is_empty());
    }

    #[test]
    fn owner_windows_are_shared_and_credits_debit_all_or_nothing() {
        let m = MemoryLimiter::default();
        let (a, b, owner) = (Uuid::from_u128(4), Uuid::from_u128(5), Uuid::from_u128(6));
        let none = Limits::default();
        let shared = Limits {
            minute: Some(3),
            ..Limits::default()
        };
        let checks = plan(&none, RouteId(0), &none, &shared);
        let now = 7 * 60_000;
        let credit = CreditAsk {
            account: owner,
            ask: Ask {
                epoch: 1,
                granted: 10,
                reserve: 3,
            },
            seed: Some(0),
        };
        let run = |id| m.check_all(id, Some(owner), &checks, &spans(&checks, now), Some(credit));
        assert_eq!(run(a).1, Some(CreditAnswer::Ok { remaining: 7 }));
        assert_eq!(run(b).1, Some(CreditAnswer::Ok { remaining: 4 }));
        assert_eq!(run(a).1, Some(CreditAnswer::Ok { remaining: 1 }));
        // The owner's window is full: refused, and nothing is debited.
        let (v, c) = run(b);
        assert!(!v.allowed);
        assert_eq!(c, Some(CreditAnswer::Exhausted { remaining: 1 }));
        m.settle(owner, 1, -2);
        let (v, _) = m.check_all(a, Some(owner), &[], &[], Some(credit));
        assert!(v.allowed, "3 left after the refund");
    }
}
