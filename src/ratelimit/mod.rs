//! Multi-window rate limits: `second`, `minute`, `hour`, `day`, `month` per key,
//! plus per-route caps per key, checked and counted atomically.
//!
//! [`Limiter::check`] is the request path's entry: the local over-limit cache
//! first, then the backend (Redis, or memory). When Redis fails, each call is
//! bounded by `ratelimit.timeout`; repeated failures open a circuit breaker
//! and `on_backend_error` decides: `local` limits per instance in memory,
//! `allow` lets traffic through, `deny` answers 503.

pub mod batched;
pub mod blocked;
pub mod breaker;
mod conclude;
pub mod credit;
pub mod decision;
mod health;
pub mod lease;
pub mod memory;
pub mod redis;
mod request;
mod status;
pub mod window;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::clock::Clock;
use crate::config::{Config, OnBackendError, RateLimitBackend};
use crate::keys::KeyEntry;
use crate::keys::entry::OwnerState;
use crate::metrics::Metrics;
use crate::outcome::{Detail, Outcome, Rejection};
use crate::routes::RouteId;
use blocked::{Block, BlockCache};
pub use credit::Debit;
pub use credit::RouteCost;
use credit::Seeds;
use decision::{Span, WindowStatus, plan};
pub use health::{BackendState, Health};
use memory::MemoryLimiter;
use redis::RedisBackend;
pub use status::RateStatus;

use window::Limits;

/// The route a request is on, as the limiter sees it: its stable id (local
/// state), its name (Redis keys, header names), its per-key caps and its cost.
#[derive(Debug, Clone, Copy)]
pub struct RouteLimits<'a> {
    pub id: RouteId,
    pub name: &'a str,
    pub caps: &'a Limits,
    pub cost: RouteCost,
}

impl RouteLimits<'_> {
    /// A verify call without a route: an id no route has (no caps, no
    /// blocks), the default cost.
    pub const NONE: RouteLimits<'static> = RouteLimits {
        id: RouteId(u32::MAX),
        name: "",
        caps: &Limits::NONE,
        cost: RouteCost::DEFAULT,
    };
}

/// What a check found: rate-limit state for the headers, and the credits.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Limited {
    pub rate: Option<RateStatus>,
    pub credits: Option<Box<Credits>>,
}

/// The credit part of a check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credits {
    /// The balance after the request (also when refused for credits).
    pub remaining: i64,
    /// What an admitted request was charged.
    pub debit: Option<Debit>,
}

/// The outcome of a check, and a rejection if refused.
pub type LimitResult = Result<Limited, (Rejection, Limited)>;

use request::Req;

pub struct Limiter {
    redis: Option<Arc<RedisBackend>>,
    /// Set in batched mode: local counting, flushed to Redis.
    batched: Option<batched::BatchedLimiter>,
    batch_interval: Duration,
    /// Exact mode with Redis: admissions taken from Redis ahead, per key and route.
    leases: lease::Leases,
    local: MemoryLimiter,
    blocked: BlockCache,
    on_error: OnBackendError,
    timeout: Duration,
    probe_interval: Duration,
    seeds: Seeds,
    clock: Clock,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
}

#[derive(Debug, thiserror::Error)]
pub enum LimiterError {
    #[error("rate limits: {0}")]
    Backend(#[from] redis::BackendError),
}

impl Limiter {
    pub fn new(
        config: &Config,
        metrics: Arc<Metrics>,
        health: Arc<Health>,
        clock: Clock,
    ) -> Result<Limiter, LimiterError> {
        let rl = &config.ratelimit;
        let redis: Option<Arc<RedisBackend>> = match &rl.backend {
            RateLimitBackend::Memory => None,
            RateLimitBackend::Redis(cfg) => Some(Arc::new(RedisBackend::new(
                cfg,
                rl.breaker_failures,
                redis::RedisMetrics {
                    master_changes: metrics.ratelimit_master_changes.clone(),
                    batch: metrics.ratelimit_script_batch.clone(),
                },
            )?)),
        };
        let (batched, batch_interval) = match (&redis, rl.mode) {
            (Some(r), crate::config::RateLimitMode::Batched(every)) => {
                (Some(batched::BatchedLimiter::new(r.clone())), every)
            }
            _ => (None, Duration::from_secs(1)),
        };
        let lease = match (&redis, rl.mode) {
            (Some(_), crate::config::RateLimitMode::Exact) => rl.lease,
            _ => 1,
        };
        Ok(Limiter {
            redis,
            batched,
            batch_interval,
            leases: lease::Leases::new(lease),
            local: MemoryLimiter::default(),
            blocked: BlockCache::default(),
            on_error: rl.on_backend_error,
            timeout: rl.timeout,
            probe_interval: rl.breaker_probe_interval,
            seeds: Seeds::default(),
            clock,
            metrics,
            health,
        })
    }

    /// Where balances missing from the limiter are rebuilt from.
    pub fn with_ledger(mut self, ledger: Arc<dyn crate::store::CreditLedger>) -> Limiter {
        self.seeds = Seeds::new(ledger);
        self
    }

    fn probe_timeout(&self) -> Duration {
        self.timeout.max(Duration::from_millis(500))
    }

    /// Checks that Redis answers, if used. An unreachable Redis is not fatal:
    /// the gateway starts degraded and the background probe keeps trying. A
    /// misconfigured one (a cluster node behind a standalone URL) is.
    pub async fn connect(&self) -> Result<(), LimiterError> {
        let Some(r) = &self.redis else { return Ok(()) };
        match r.probe(self.probe_timeout()).await {
            Ok(()) => tracing::info!(topology = r.topology(), "rate limits: redis answers"),
            Err(e @ redis::BackendError::ClusterNode) => return Err(e.into()),
            Err(e) => {
                tracing::warn!(error = %e, mode = ?self.on_error, "rate limits: redis unavailable at start; degraded until it answers");
                if r.breaker.trip() {
                    self.set_degraded(true);
                }
            }
        }
        Ok(())
    }

    fn set_degraded(&self, degraded: bool) {
        self.health.set_degraded(degraded);
        self.metrics.ratelimit_degraded.set(i64::from(degraded));
    }

    /// Checks and counts one request of `key` (whose owner is in `owner`
    /// state) on `route`, and debits its credits.
    /// `route`: `None` for a verify call without a route (no route cap).
    pub async fn check(
        &self,
        key: &KeyEntry,
        owner: &OwnerState,
        route: Option<RouteLimits<'_>>,
    ) -> LimitResult {
        // No route: an id no route has, so no route caps or blocks apply.
        let route = route.unwrap_or(RouteLimits::NONE);
        let caps = request::route_cap(key, owner, route.id, *route.caps);
        let now = self.clock.now_ms().max(0) as u64;
        let credit = credit::plan(key, owner, route.cost, now as i64);
        if key.limits().is_empty() && caps.is_empty() && owner.limits.is_empty() && credit.is_none()
        {
            return Ok(Limited::default());
        }
        let checks = plan(key.limits(), route.id, &caps, &owner.limits);
        let spans: Vec<Span> = checks.iter().map(|c| Span::at(c.window, now)).collect();
        let req = Req {
            key,
            owner,
            checks,
            spans,
            credit,
            route,
        };
        // Admissions already counted in Redis for this gateway come first,
        // even while a refusal blocks the key: they were counted before it.
        if let Some(v) = self.leased(&req, now) {
            return self.conclude(&req, v, request::Credit::None, now);
        }
        let block = self.blocked.get(key.limit_id, route.id, now).or_else(|| {
            let shared = !owner.limits.is_empty();
            shared.then(|| self.blocked.get_owner(key.owner.limit_id, now))?
        });
        if let Some(block) = block {
            let (r, rate) = self.blocked_rejection(&req, &block, now);
            let limited = Limited {
                rate,
                ..Limited::default()
            };
            return Err((r, limited));
        }
        let (verdict, credit) = match &self.redis {
            None => self.local_call(&req).await,
            Some(r) => match self.backend_check(r, &req).await {
                Some(v) => v,
                None => match self.fallback(&req).await {
                    Ok(v) => v,
                    Err(e) => return e,
                },
            },
        };
        self.conclude(&req, verdict, credit, now)
    }

    /// One Redis call bounded by `ratelimit.timeout`, with the breaker's
    /// bookkeeping; `None` when it failed or timed out.
    async fn guarded<T, E: std::fmt::Display>(
        &self,
        r: &RedisBackend,
        call: impl std::future::Future<Output = Result<T, E>>,
    ) -> Option<T> {
        match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(v)) => {
                r.breaker.success();
                Some(v)
            }
            Ok(Err(e)) => {
                self.failed(r, &e.to_string());
                None
            }
            Err(_) => {
                self.failed(r, "timed out");
                None
            }
        }
    }

    fn failed(&self, r: &RedisBackend, why: &str) {
        self.metrics.ratelimit_backend_errors.inc();
        if r.breaker.failure() {
            tracing::warn!(error = why, mode = ?self.on_error, "rate limits: redis failing; circuit open, falling back");
            self.set_degraded(true);
        }
    }

    /// A post-paid route's correction after the response: the upstream
    /// reported `credits`, the request reserved `debit.reserved`.
    pub async fn settle(&self, debit: &Debit, credits: i64) {
        let delta = credits.saturating_sub(debit.reserved);
        if delta == 0 {
            return;
        }
        let epoch = debit.charged_to.epoch;
        match (&debit.at, &self.redis) {
            (credit::CellAt::Local(id), _) => self.local.settle(*id, epoch, delta),
            (credit::CellAt::Redis(cell), Some(r)) => {
                let call = r.settle(cell, epoch, delta, self.probe_timeout());
                if self.guarded(r, call).await.is_none() {
                    tracing::warn!(
                        delta,
                        "credits: a post-paid correction did not reach redis; the ledger has it"
                    );
                }
            }
            (credit::CellAt::Redis(_), None) => {}
        }
    }

    fn blocked_rejection(
        &self,
        req: &Req<'_>,
        block: &Block,
        now: u64,
    ) -> (Rejection, Option<RateStatus>) {
        let wait = block.until_ms.saturating_sub(now);
        let retry_after = wait.div_ceil(1000).max(1);
        let windows: Vec<WindowStatus> = (req.checks.iter().zip(&req.spans))
            .map(|(c, span)| WindowStatus {
                check: *c,
                remaining: if c.window == block.window { 0 } else { c.limit },
                reset_secs: span.left_ms().div_ceil(1000),
                window_secs: span.bucket.len_ms / 1000,
            })
            .collect();
        let at = windows.iter().position(|w| w.remaining == 0);
        let r = Rejection {
            outcome: Outcome::RateLimited,
            detail: Detail::RateLimited {
                window: block.window,
                retry_after,
            },
        };
        (r, Some(self.status(&windows, at, req.route.name)))
    }

    fn status(&self, windows: &[WindowStatus], pick: Option<usize>, route: &str) -> RateStatus {
        status::build(windows, pick, route)
    }

    /// Batched mode: flushes local counts to Redis every `batch_interval`.
    async fn run_flush(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let (Some(b), Some(r)) = (&self.batched, &self.redis) else {
            return;
        };
        loop {
            tokio::select! {
                _ = tokio::time::sleep(self.batch_interval) => {}
                _ = stop.wait_for(|s| *s) => break,
            }
            if r.breaker.is_open() {
                continue;
            }
            match b.flush(self.probe_timeout()).await {
                Ok(_) => r.breaker.success(),
                Err(e) => self.failed(r, &e.to_string()),
            }
        }
        // Counted here but not yet in Redis: one last flush.
        let _ = b.flush(self.probe_timeout()).await;
    }

    /// Probes Redis while the breaker is open, and sweeps stale local state.
    pub async fn run_background(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        if self.batched.is_some() {
            tokio::spawn(self.clone().run_flush(stop.clone()));
        }
        let mut sweep = tokio::time::interval(Duration::from_secs(30));
        loop {
            tokio::select! {
                _ = tokio::time::sleep(self.probe_interval) => {}
                _ = sweep.tick() => {
                    let now = self.clock.now_ms().max(0) as u64;
                    self.blocked.sweep(now);
                    self.local.sweep(now);
                    self.leases.sweep(now);
                    if let Some(b) = &self.batched {
                        b.sweep();
                    }
                    continue;
                }
                _ = stop.wait_for(|s| *s) => break,
            }
            let Some(r) = &self.redis else { continue };
            if !r.breaker.is_open() {
                continue;
            }
            if r.probe(self.probe_timeout()).await.is_ok() && r.breaker.close() {
                tracing::info!("rate limits: redis answering again; circuit closed");
                self.set_degraded(false);
            }
        }
        self.give_back_leases().await;
    }
}
