//! The end of a check: the rejection (429 for a full window, which takes
//! precedence; 402 for credits; 503 when a balance could not be read), the
//! local over-limit block, and what the response headers report.

use super::credit::Debit;
use super::decision::{Scope, Verdict};
use super::request::{Credit, Req};
use super::{Block, Credits, LimitResult, Limited, Limiter};
use crate::outcome::{Detail, Outcome, Rejection};

impl Limiter {
    pub(super) fn conclude(
        &self,
        req: &Req<'_>,
        v: Verdict,
        credit: Credit,
        now: u64,
    ) -> LimitResult {
        let (route, checks) = (req.route.name, &req.checks);
        let mut limited = Limited::default();
        match credit {
            Credit::Unavailable => {
                let r = Rejection {
                    outcome: Outcome::RateLimitUnavailable,
                    detail: Detail::RetryAfter(1),
                };
                return Err((r, limited));
            }
            Credit::Exhausted { remaining } => {
                limited.credits = Some(Box::new(Credits {
                    remaining,
                    debit: None,
                }));
            }
            Credit::Debited { remaining, at } => {
                let debit = req.credit.as_ref().map(|c| Debit {
                    charged_to: crate::credits::ChargedTo {
                        account: c.account.clone(),
                        epoch: c.ask.epoch,
                    },
                    reserved: c.ask.reserve,
                    remaining,
                    post_paid: c.post_paid,
                    at,
                });
                limited.credits = Some(Box::new(Credits { remaining, debit }));
            }
            Credit::None => {}
        }
        match v.rejected_by {
            Some((i, wait)) if !v.allowed => {
                let check = checks[i];
                let id = match check.scope {
                    Scope::Owner => req.key.owner.limit_id,
                    _ => req.key.limit_id,
                };
                let block = Block {
                    until_ms: now.saturating_add(wait),
                    window: check.window,
                };
                self.blocked.insert(id, check.scope, block);
                limited.rate = Some(self.status(&v.windows, Some(i), route));
                let r = Rejection {
                    outcome: Outcome::RateLimited,
                    detail: Detail::RateLimited {
                        window: check.window,
                        retry_after: wait.div_ceil(1000),
                    },
                };
                Err((r, limited))
            }
            _ => {
                limited.rate = (!checks.is_empty()).then(|| self.status(&v.windows, None, route));
                let exhausted = limited.credits.as_ref().filter(|c| c.debit.is_none());
                match (exhausted.map(|c| c.remaining), &req.credit) {
                    (Some(remaining), Some(c)) => {
                        let r = Rejection {
                            outcome: Outcome::CreditsExhausted,
                            detail: Detail::Credits {
                                remaining,
                                cost: c.ask.need().unsigned_abs(),
                            },
                        };
                        Err((r, limited))
                    }
                    _ => Ok(limited),
                }
            }
        }
    }
}
