//! Credits: a prepaid balance on a key or an owner, with an optional refill.
//! Pure: what is stored ([`CreditState`], changed only by `set`, `add` and
//! creation), the refill period a time falls in, what an account is granted in
//! a period, and the epoch its spending is counted in. The live spending is
//! counted by the rate limiter ([`cell`]), the recorded spending by the usage
//! writer; `remaining = granted − spent (in the current epoch)`.
//!
//! Refill: `interval = "day"` at 00:00 UTC, or `"month"` on `day_of_month`
//! (1–28, default 1) at 00:00 UTC. At each refill the balance **becomes**
//! `amount` (what was left, and what was added, does not carry over). Computed
//! lazily: an account's epoch includes its refill period, so the first request
//! of a new period starts a new spent counter.

pub mod cell;

use std::sync::Arc;

use chrono::{DateTime, Datelike, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The largest balance, top-up or refill: sums stay exact in Redis's Lua doubles.
pub const MAX_CREDITS: i64 = 1_000_000_000_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Interval {
    Day,
    Month,
}

/// When and to what a balance is refilled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Refill {
    /// The balance at each refill (it replaces what is left).
    #[schema(minimum = 1, maximum = 1_000_000_000_000_000_i64)]
    pub amount: i64,
    pub interval: Interval,
    /// `month` only: the day of the month (1-28) the refill happens on, at 00:00 UTC (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 28)]
    pub day_of_month: Option<u8>,
}

/// An account's grant as stored (on the key or owner row). Changes only by
/// creation, `set` and `add` (and a refill change, which is a `set`), so it
/// travels with the key table's change feed; spending is counted elsewhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CreditState {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refill: Option<Refill>,
    /// The balance set in `base_period` (creation or the last `set`).
    pub base: i64,
    pub base_period: i64,
    /// Added in `added_period` (adds end at the next refill).
    pub added: i64,
    pub added_period: i64,
    /// How many times the balance was set: each set starts a new epoch.
    pub sets: i64,
}

/// The refill period `now_ms` falls in: days or months since the epoch
/// (months starting on `day_of_month`); 0 without a refill.
pub fn period(refill: Option<&Refill>, now_ms: i64) -> i64 {
    let Some(r) = refill else { return 0 };
    match r.interval {
        Interval::Day => now_ms.div_euclid(86_400_000),
        Interval::Month => {
            let t = DateTime::<Utc>::from_timestamp_millis(now_ms).unwrap_or_default();
            let index = i64::from(t.year()) * 12 + i64::from(t.month0());
            let day = u32::from(r.day_of_month.unwrap_or(1).clamp(1, 28));
            if t.day() < day { index - 1 } else { index }
        }
    }
}

impl CreditState {
    /// A new account holding `remaining`.
    pub fn new(remaining: i64, refill: Option<Refill>, now_ms: i64) -> CreditState {
        let p = period(refill.as_ref(), now_ms);
        CreditState {
            refill,
            base: remaining,
            base_period: p,
            added: 0,
            added_period: p,
            sets: 1,
        }
    }

    pub fn period(&self, now_ms: i64) -> i64 {
        period(self.refill.as_ref(), now_ms)
    }

    /// What the account is granted in period `p`: the set balance in its own
    /// period, the refill amount in later ones, plus what was added in `p`.
    pub fn granted(&self, p: i64) -> i64 {
        let base = match &self.refill {
            Some(r) if p > self.base_period => r.amount,
            _ => self.base,
        };
        let added = if p == self.added_period {
            self.added
        } else {
            0
        };
        base.saturating_add(added)
    }

    /// The epoch spending in period `p` is counted in: increases with every
    /// set and every refill, never decreases.
    pub fn epoch(&self, p: i64) -> i64 {
        (self.sets << 32) | (p & 0xffff_ffff)
    }

    /// Replaces the balance (and the refill), starting a new epoch.
    pub fn set(&mut self, remaining: i64, refill: Option<Refill>, now_ms: i64) {
        *self = CreditState {
            sets: self.sets + 1,
            ..CreditState::new(remaining, refill, now_ms)
        };
    }

    /// Adds to the current period's balance.
    pub fn add(&mut self, n: i64, now_ms: i64) {
        let p = self.period(now_ms);
        if self.added_period != p {
            self.added = 0;
            self.added_period = p;
        }
        self.added = self.added.saturating_add(n);
    }

    /// The balance in the current period, given what was spent in `spent_epoch`.
    pub fn remaining(&self, now_ms: i64, spent_epoch: i64, spent: i64) -> i64 {
        let p = self.period(now_ms);
        let spent = if spent_epoch == self.epoch(p) {
            spent
        } else {
            0
        };
        self.granted(p).saturating_sub(spent)
    }
}

/// Credits as the API shows them: the balance now (as of the last usage
/// flush) and the refill.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct CreditsView {
    /// What is left now; may be below zero by a post-paid request's cost.
    pub remaining: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refill: Option<Refill>,
}

/// Credits in a create or update body: `remaining` sets the balance (on
/// creation: default the refill's amount); `refill` (or `null`) replaces the refill.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreditsInput {
    #[serde(default)]
    #[schema(minimum = 0, maximum = 1_000_000_000_000_000_i64)]
    pub remaining: Option<i64>,
    #[serde(default, deserialize_with = "crate::keys::model::present_object")]
    pub refill: Option<Option<Refill>>,
}

/// `POST .../credits`: exactly one of `add` or `set`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreditChange {
    /// Tops up the current period's balance.
    #[schema(minimum = 1, maximum = 1_000_000_000_000_000_i64)]
    pub add: Option<i64>,
    /// Replaces the balance.
    #[schema(minimum = 0, maximum = 1_000_000_000_000_000_i64)]
    pub set: Option<i64>,
}

/// Whose balance a request draws on: a key's own (shared by its rotations,
/// so by lineage) or its owner's.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Account {
    Key(Uuid),
    Owner(Arc<str>),
}

/// Which balance a request's credits were debited from (in its usage record,
/// so that the writer adds them to that account's recorded spending).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChargedTo {
    pub account: Account,
    pub epoch: i64,
}

/// A change to an account's credits, by the API or the CLI (audited).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CreditOp {
    Add(i64),
    Set(i64),
    /// From a create or update body (`None`: remove the credits).
    Configure(Option<CreditsInput>),
}

/// The ledger row a change writes: `set`, `add` or `clear`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LedgerEntry {
    pub kind: &'static str,
    pub amount: i64,
}

impl LedgerEntry {
    fn set(amount: i64) -> Option<LedgerEntry> {
        Some(LedgerEntry {
            kind: "set",
            amount,
        })
    }
}

/// The state after `op`, and its ledger row (`None`: nothing changed).
/// `recorded`: the (epoch, spent) the ledger holds, for a refill change,
/// which keeps the balance as recorded and starts a new epoch.
pub fn apply(
    state: Option<CreditState>,
    op: &CreditOp,
    recorded: (i64, i64),
    now_ms: i64,
) -> (Option<CreditState>, Option<LedgerEntry>) {
    match (state, op) {
        (None, CreditOp::Add(n) | CreditOp::Set(n)) => {
            let kind = if matches!(op, CreditOp::Add(_)) {
                "add"
            } else {
                "set"
            };
            let entry = Some(LedgerEntry { kind, amount: *n });
            (Some(CreditState::new(*n, None, now_ms)), entry)
        }
        (Some(mut s), CreditOp::Add(n)) => {
            s.add(*n, now_ms);
            (
                Some(s),
                Some(LedgerEntry {
                    kind: "add",
                    amount: *n,
                }),
            )
        }
        (Some(mut s), CreditOp::Set(n)) => {
            s.set(*n, s.refill, now_ms);
            (Some(s), LedgerEntry::set(*n))
        }
        (None, CreditOp::Configure(None)) => (None, None),
        (Some(_), CreditOp::Configure(None)) => (
            None,
            Some(LedgerEntry {
                kind: "clear",
                amount: 0,
            }),
        ),
        (None, CreditOp::Configure(Some(input))) => {
            let refill = input.refill.flatten();
            let n = input.remaining.or(refill.map(|r| r.amount)).unwrap_or(0);
            (
                Some(CreditState::new(n, refill, now_ms)),
                LedgerEntry::set(n),
            )
        }
        (Some(mut s), CreditOp::Configure(Some(input))) => {
            let refill = input.refill.unwrap_or(s.refill);
            let n = match input.remaining {
                Some(n) => n,
                None if refill != s.refill => s.remaining(now_ms, recorded.0, recorded.1),
                None => return (Some(s), None),
            };
            s.set(n, refill, now_ms);
            (Some(s), LedgerEntry::set(n))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn ms(y: i32, m: u32, d: u32, h: u32) -> i64 {
        Utc.with_ymd_and_hms(y, m, d, h, 0, 0)
            .single()
            .map(|t| t.timestamp_millis())
            .unwrap_or_default()
    }

    fn monthly(day: u8) -> Refill {
        Refill {
            amount: 100,
            interval: Interval::Month,
            day_of_month: Some(day),
        }
    }

    #[test]
    fn periods_start_at_midnight_utc() {
        let daily = Refill {
            amount: 1,
            interval: Interval::Day,
            day_of_month: None,
        };
        assert_eq!(
            period(Some(&daily), ms(2031, 1, 1, 23)) + 1,
            period(Some(&daily), ms(2031, 1, 2, 0))
        );
        let m = monthly(15);
        let before = period(Some(&m), ms(2031, 3, 14, 23));
        assert_eq!(period(Some(&m), ms(2031, 3, 15, 0)), before + 1);
        assert_eq!(period(Some(&m), ms(2031, 4, 14, 23)), before + 1);
        assert_eq!(period(None, ms(2031, 3, 15, 0)), 0);
    }

    #[test]
    fn a_refill_replaces_the_balance_and_adds_expire() {
        let t0 = ms(2031, 1, 10, 12);
        let mut s = CreditState::new(30, Some(monthly(1)), t0);
        s.add(5, t0);
        let p = s.period(t0);
        assert_eq!(s.granted(p), 35);
        assert_eq!(s.remaining(t0, s.epoch(p), 40), -5);
        let next = ms(2031, 2, 1, 0);
        let q = s.period(next);
        assert_eq!(s.granted(q), 100, "refill replaces, adds are gone");
        assert!(s.epoch(q) > s.epoch(p));
        assert_eq!(s.remaining(next, s.epoch(p), 40), 100);
        let e = s.epoch(q);
        s.set(7, s.refill, next);
        assert!(s.epoch(s.period(next)) > e, "a set starts a new epoch");
        assert_eq!(s.granted(s.period(next)), 7);
    }

    #[test]
    fn ops_write_ledger_rows() {
        let t = ms(2031, 1, 10, 12);
        let (s, e) = apply(None, &CreditOp::Add(5), (0, 0), t);
        assert_eq!(
            (s.map(|s| s.granted(0)), e.map(|e| e.kind)),
            (Some(5), Some("add"))
        );
        let daily = Refill {
            amount: 9,
            interval: Interval::Day,
            day_of_month: None,
        };
        let input = CreditsInput {
            remaining: None,
            refill: Some(Some(daily)),
        };
        let (s2, e2) = apply(
            s,
            &CreditOp::Configure(Some(input.clone())),
            (1 << 32, 2),
            t,
        );
        let s2 = s2.expect("credits");
        // The balance as recorded (5 - 2) stays; the refill applies from tomorrow.
        assert_eq!(
            (s2.granted(s2.period(t)), e2.map(|e| e.amount)),
            (3, Some(3))
        );
        assert_eq!(
            apply(Some(s2), &CreditOp::Configure(Some(input)), (0, 0), t).1,
            None
        );
        assert_eq!(
            apply(Some(s2), &CreditOp::Configure(None), (0, 0), t).0,
            None
        );
    }
}
