//! Credits in the limiter: which balance a request draws on and what it asks
//! of it, the ledger seed for a balance the limiter does not hold (after a
//! Redis flush, restart or failover, or a gateway start in embedded mode), and
//! the post-paid correction after the response.
//!
//! A request draws on its key's own credits if the key has any (a prepaid
//! key does not touch its owner's pool), else on its owner's, else on none.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use uuid::Uuid;

use crate::credits::cell::Ask;
use crate::credits::{Account, ChargedTo};
use crate::keys::KeyEntry;
use crate::keys::entry::OwnerState;
use crate::store::CreditLedger;

/// How long a seed may take; past it the request is refused (503).
const SEED_TIMEOUT: Duration = Duration::from_secs(2);

/// What a route costs: `cost` up front; with a `cost_header`, what the
/// upstream reports instead (`cost` is then reserved up front and the
/// difference settled after the response).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteCost {
    pub cost: i64,
    pub post_paid: bool,
}

impl RouteCost {
    /// A route's default, and a verify call without a route.
    pub const DEFAULT: RouteCost = RouteCost {
        cost: 1,
        post_paid: false,
    };
}

/// A request's credit part, planned before the limiter call.
#[derive(Debug, Clone)]
pub struct Plan {
    pub account: Account,
    /// The account in the memory limiter: the key's lineage or the owner's id digest.
    pub local_id: Uuid,
    pub ask: Ask,
    pub post_paid: bool,
}

/// The credit part of a request on a route of `cost`, if its key or owner has credits.
pub fn plan(key: &KeyEntry, owner: &OwnerState, cost: RouteCost, now_ms: i64) -> Option<Plan> {
    if cost.cost == 0 && !cost.post_paid {
        return None;
    }
    let (account, local_id, state) = match (&key.credits, &owner.credits) {
        (Some(s), _) => (Account::Key(key.limit_id), key.limit_id, **s),
        (None, Some(s)) => (Account::Owner(key.owner.id.clone()), key.owner.limit_id, *s),
        (None, None) => return None,
    };
    let p = state.period(now_ms);
    Some(Plan {
        account,
        local_id,
        ask: Ask {
            epoch: state.epoch(p),
            granted: state.granted(p),
            reserve: cost.cost,
        },
        post_paid: cost.post_paid,
    })
}

/// Where a balance lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CellAt {
    Redis(Box<str>),
    Local(Uuid),
}

/// What an admitted request was charged: for the response headers, its usage
/// record and the post-paid correction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Debit {
    pub charged_to: ChargedTo,
    /// Debited on admission (the route's `cost`).
    pub reserved: i64,
    /// The balance after this request (before a post-paid correction).
    pub remaining: i64,
    pub post_paid: bool,
    pub at: CellAt,
}

impl Debit {
    /// What the request costs, given the cost the upstream reported (a
    /// post-paid route without a valid report costs what it reserved).
    pub fn credits(&self, reported: Option<i64>) -> i64 {
        match reported {
            Some(n) if self.post_paid => n,
            _ => self.reserved,
        }
    }
}

/// The ledger's recorded spending of accounts whose balance is missing, one
/// load per account at a time.
#[derive(Default)]
pub struct Seeds {
    ledger: Option<Arc<dyn CreditLedger>>,
    inflight: parking_lot::Mutex<HashMap<Account, Arc<Load>>>,
}

/// One ledger read: (epoch, spent), or `None` when it failed.
type Load = tokio::sync::OnceCell<Option<(i64, i64)>>;

impl Seeds {
    pub fn new(ledger: Arc<dyn CreditLedger>) -> Seeds {
        Seeds {
            ledger: Some(ledger),
            inflight: Default::default(),
        }
    }

    /// What the ledger recorded as spent in `epoch`; `None` when it cannot say.
    pub async fn load(&self, account: &Account, epoch: i64) -> Option<i64> {
        let ledger = self.ledger.as_ref()?;
        let cell = self
            .inflight
            .lock()
            .entry(account.clone())
            .or_default()
            .clone();
        let got = *cell
            .get_or_init(|| async {
                match tokio::time::timeout(SEED_TIMEOUT, ledger.recorded_spent(account)).await {
                    Ok(Ok(v)) => Some(v),
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "credits: cannot read the ledger to rebuild a balance");
                        None
                    }
                    Err(_) => {
                        tracing::warn!("credits: the ledger did not answer in time to rebuild a balance");
                        None
                    }
                }
            })
            .await;
        let mut inflight = self.inflight.lock();
        if inflight.get(account).is_some_and(|c| Arc::ptr_eq(c, &cell)) {
            inflight.remove(account);
        }
        got.map(|(e, spent)| if e == epoch { spent } else { 0 })
    }
}
