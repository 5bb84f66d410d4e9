//! One request's limiter work: what it checks (the key's windows, the route
//! cap or its override, the owner's shared windows, the credit balance), and
//! the one call that decides it, in Redis or in memory. A missing balance is
//! rebuilt from the ledger and the call made again, once.

use super::credit::{CellAt, Plan};
use super::decision::{self, Check, Scope, Span, Verdict};
use super::lease::Ask;
use super::memory::{CreditAnswer, CreditAsk};
use super::redis::{self as backend, Call, CreditCall, CreditReply, RedisBackend};
use super::{LimitResult, Limited, Limiter, window::Limits};
use crate::config::OnBackendError;
use crate::keys::KeyEntry;
use crate::keys::entry::OwnerState;
use crate::outcome::{Detail, Outcome, Rejection};
use crate::routes::RouteId;

/// What a request checks.
pub(super) struct Req<'a> {
    pub key: &'a KeyEntry,
    pub owner: &'a OwnerState,
    pub checks: Vec<Check>,
    pub spans: Vec<Span>,
    pub credit: Option<Plan>,
    pub route: super::RouteLimits<'a>,
}

/// A key's Redis prefix: its lineage's (on the stack), or under its owner's tag.
enum Prefix {
    Lineage(backend::LineagePrefix),
    Owned(String),
}

impl Prefix {
    fn as_str(&self) -> &str {
        match self {
            Prefix::Lineage(p) => p.as_str(),
            Prefix::Owned(s) => s,
        }
    }
}

/// What the balance said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Credit {
    None,
    /// Admitted and debited; the balance after.
    Debited {
        remaining: i64,
        at: CellAt,
    },
    Exhausted {
        remaining: i64,
    },
    /// Neither the limiter nor the ledger could say (refused: 503).
    Unavailable,
}

/// The route cap for a request: the key's override, else its owner's, else the route's.
pub(super) fn route_cap(
    key: &KeyEntry,
    owner: &OwnerState,
    route: RouteId,
    default: Limits,
) -> Limits {
    key.policy
        .route_caps
        .get(route)
        .or_else(|| owner.route_caps.get(route))
        .copied()
        .unwrap_or(default)
}

impl Req<'_> {
    /// The route a lease is held for: the request's, when it has caps on it;
    /// else none, so that a key's routes without caps share one lease (the
    /// same checks, the same counters in Redis).
    fn lease_route(&self) -> RouteId {
        match self
            .checks
            .iter()
            .any(|c| matches!(c.scope, Scope::Route(_)))
        {
            true => self.route.id,
            false => super::RouteLimits::NONE.id,
        }
    }

    /// Whether something is counted for the owner (its windows or balance).
    pub fn involves_owner(&self) -> bool {
        !self.owner.limits.is_empty() || self.credit.is_some()
    }

    /// The Redis key prefixes: the key's, and the owner's when the owner
    /// counts something (then both carry the owner's hash tag). The usual
    /// case (an owner that counts nothing) allocates nothing.
    fn prefixes(&self) -> (Prefix, Option<String>) {
        let tag = &self.key.owner.tag;
        if self.owner.metered() {
            let key = format!("{tag}{}:", self.key.limit_id);
            (Prefix::Owned(key), Some(format!("{tag}o:")))
        } else {
            (
                Prefix::Lineage(backend::LineagePrefix::new(self.key.limit_id)),
                None,
            )
        }
    }
}

impl Limiter {
    /// The memory backend (or the fallback without credits): one locked
    /// decision, again with a seed if the balance is not here yet.
    pub(super) async fn local_call(&self, req: &Req<'_>) -> (Verdict, Credit) {
        let owner_id = req.involves_owner().then_some(req.key.owner.limit_id);
        let mut seed = None;
        loop {
            let ask = req.credit.as_ref().map(|c| CreditAsk {
                account: c.local_id,
                ask: c.ask,
                seed,
            });
            let (verdict, answer) =
                self.local
                    .check_all(req.key.limit_id, owner_id, &req.checks, &req.spans, ask);
            let credit = match (answer, &req.credit) {
                (None, _) | (_, None) => Credit::None,
                (Some(CreditAnswer::Ok { remaining }), Some(c)) => Credit::Debited {
                    remaining,
                    at: CellAt::Local(c.local_id),
                },
                (Some(CreditAnswer::Exhausted { remaining }), _) => Credit::Exhausted { remaining },
                (Some(CreditAnswer::NeedSeed), Some(_)) if seed.is_some() => Credit::Unavailable,
                (Some(CreditAnswer::NeedSeed), Some(c)) => {
                    match self.seeds.load(&c.account, c.ask.epoch).await {
                        Some(s) => {
                            seed = Some(s);
                            continue;
                        }
                        None => Credit::Unavailable,
                    }
                }
            };
            return (verdict, credit);
        }
    }

    /// Whether the request's admissions may be leased: exact mode with
    /// Redis, nothing counted for the owner (see [`super::lease`]).
    fn leasable(&self, req: &Req<'_>) -> bool {
        self.leases.enabled() && !req.involves_owner()
    }

    /// The request admitted from this gateway's lease, if it holds one.
    pub(super) fn leased(&self, req: &Req<'_>, now: u64) -> Option<Verdict> {
        if !self.leasable(req) {
            return None;
        }
        let (id, route) = (req.key.limit_id, req.lease_route());
        let v = self.leases.take(id, route, &req.checks, &req.spans, now)?;
        self.metrics.ratelimit_leased.inc();
        Some(v)
    }

    /// At shutdown: the admissions this gateway leased and did not use go
    /// back to Redis, so that a restart or an upgrade costs the other
    /// gateways nothing (a killed gateway's stay counted until their buckets
    /// end).
    pub(super) async fn give_back_leases(&self) {
        let Some(r) = &self.redis else { return };
        let unused = self.leases.drain();
        if unused.is_empty() {
            return;
        }
        let n: u64 = unused.iter().map(|u| u.n).sum();
        let call = r.give_back(&unused, self.probe_timeout());
        match tokio::time::timeout(self.probe_timeout(), call).await {
            Ok(Ok(_)) => tracing::info!(admissions = n, "rate limits: unused leases given back"),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, admissions = n, "rate limits: unused leases not given back; counted until their buckets end")
            }
            Err(_) => tracing::warn!(
                admissions = n,
                "rate limits: giving unused leases back timed out; counted until their buckets end"
            ),
        }
    }

    /// The exact Redis call (also for batched mode's requests with owner
    /// windows or credits); `None` when Redis could not answer.
    pub(super) async fn exact_call(
        &self,
        r: &RedisBackend,
        req: &Req<'_>,
    ) -> Option<(Verdict, Credit)> {
        let (id, route) = (req.key.limit_id, req.lease_route());
        let mut ask = match self.leasable(req) {
            true => self.leases.ask(id, route),
            false => Ask::One,
        };
        if let Ask::Wait(woken) = ask {
            // Another request of this key is asking for a lease: wait for it
            // once (its call is bounded by the timeout). If Redis did not
            // answer it, the fallback applies now, not after a second wait.
            woken.await;
            if let Some(v) = self.leased(req, self.clock.now_ms().max(0) as u64) {
                return Some((v, Credit::None));
            }
            if self.leases.failed(id, route) {
                return None;
            }
            ask = Ask::One;
        }
        let (key_prefix, owner_prefix) = req.prefixes();
        let key_prefix = key_prefix.as_str();
        let cell = req.credit.as_ref().map(|c| match c.account {
            crate::credits::Account::Key(_) => format!("{key_prefix}c"),
            crate::credits::Account::Owner(_) => {
                format!("{}c", owner_prefix.as_deref().unwrap_or(key_prefix))
            }
        });
        let mut seed = None;
        loop {
            let call = Call {
                key_prefix,
                owner_prefix: owner_prefix.as_deref(),
                checks: &req.checks,
                spans: &req.spans,
                route_name: req.route.name,
                credit: req
                    .credit
                    .as_ref()
                    .zip(cell.as_deref())
                    .map(|(c, cell)| CreditCall {
                        cell,
                        ask: c.ask,
                        seed,
                    }),
                ask: ask.n(),
            };
            let reply = self
                .guarded(r, r.check(&call, self.probe_timeout()))
                .await?;
            if let Ask::Lease(a) = std::mem::replace(&mut ask, Ask::One) {
                match reply.granted {
                    0 => a.refused(),
                    granted => {
                        let now = self.clock.now_ms().max(0) as u64;
                        let a = a.at(key_prefix, req.route.name);
                        a.keep(&req.checks, &req.spans, &reply.counts, granted, now);
                    }
                }
            }
            let credit = match (reply.credit, &req.credit) {
                (CreditReply::NeedSeed, Some(c)) if seed.is_none() => {
                    match self.seeds.load(&c.account, c.ask.epoch).await {
                        Some(s) => {
                            seed = Some(s);
                            continue;
                        }
                        None => {
                            return Some((decision::evaluate(&[], &[], &[]), Credit::Unavailable));
                        }
                    }
                }
                (CreditReply::NeedSeed, _) => Credit::Unavailable,
                (CreditReply::None, _) | (_, None) => Credit::None,
                (CreditReply::Enough, Some(_)) => Credit::Debited {
                    remaining: reply.remaining,
                    at: CellAt::Redis(cell.clone().unwrap_or_default().into()),
                },
                (CreditReply::Exhausted, Some(_)) => Credit::Exhausted {
                    remaining: reply.remaining,
                },
            };
            return Some((self.follow(req, &reply, &credit), credit));
        }
    }

    /// The window verdict from the counts Redis saw, following Redis's own
    /// decision where floating point could make them differ.
    fn follow(&self, req: &Req<'_>, reply: &backend::Reply, credit: &Credit) -> Verdict {
        let mut v = decision::evaluate(&req.checks, &req.spans, &reply.counts);
        let windows_ok = v.rejected_by.is_none();
        let redis_windows_ok = reply.allowed || matches!(credit, Credit::Exhausted { .. });
        if windows_ok != redis_windows_ok && !matches!(credit, Credit::Exhausted { .. }) {
            // A floating-point edge: Redis decided (and counted, or not); follow it.
            v.allowed = reply.allowed;
            if !reply.allowed && v.rejected_by.is_none() {
                v.rejected_by = Some((0, 1_000));
            }
        }
        if v.allowed && !reply.allowed {
            v.allowed = false;
            v.windows = decision::statuses(&req.checks, &req.spans, &reply.counts, false);
        }
        v
    }

    /// Redis could not answer: `on_backend_error` decides. Credits are never
    /// counted per instance (a balance cannot be split between gateways): with
    /// `local` and `deny` a request that needs them is refused (503), with
    /// `allow` it passes uncharged. `Ok`: decided locally; `Err`: the answer
    /// itself, with nothing decided (allow, or 503).
    pub(super) async fn fallback(&self, req: &Req<'_>) -> Result<(Verdict, Credit), LimitResult> {
        let unavailable = || {
            let r = Rejection {
                outcome: Outcome::RateLimitUnavailable,
                detail: Detail::RetryAfter(1),
            };
            Err((r, Limited::default()))
        };
        match self.on_error {
            OnBackendError::Allow => Err(Ok(Limited::default())),
            OnBackendError::Deny => Err(unavailable()),
            OnBackendError::Local if req.credit.is_some() => Err(unavailable()),
            OnBackendError::Local => Ok(self.local_call(req).await),
        }
    }

    /// The Redis decision, exact or batched; `None` when Redis could not
    /// answer (and the fallback applies).
    pub(super) async fn backend_check(
        &self,
        r: &RedisBackend,
        req: &Req<'_>,
    ) -> Option<(Verdict, Credit)> {
        if r.breaker.is_open() {
            return None;
        }
        let Some(b) = &self.batched else {
            return self.exact_call(r, req).await;
        };
        // Owner windows and credits are always counted exactly.
        if req.involves_owner() {
            return self.exact_call(r, req).await;
        }
        let (id, name) = (req.key.limit_id, req.route.name);
        let (checks, spans) = (&req.checks, &req.spans);
        if let Some(v) = b.try_check(id, checks, spans, name) {
            return Some((v, Credit::None));
        }
        // First use of this key here: read its windows from Redis first.
        let sync = b.sync_key(id, checks, spans, name, self.probe_timeout());
        self.guarded(r, sync).await?;
        b.try_check(id, checks, spans, name)
            .map(|v| (v, Credit::None))
    }
}
