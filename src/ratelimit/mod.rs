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
pub mod decision;
mod health;
pub mod memory;
pub mod redis;
mod status;
pub mod window;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::clock::Clock;
use crate::config::{Config, OnBackendError, RateLimitBackend};
use crate::keys::KeyEntry;
use crate::metrics::Metrics;
use crate::outcome::{Detail, Outcome, Rejection};
use crate::routes::RouteId;
use blocked::{Block, BlockCache};
use decision::{Check, Span, Verdict, WindowStatus, plan};
pub use health::{BackendState, Health};
use memory::MemoryLimiter;
use redis::RedisBackend;
pub use status::RateStatus;

/// The route a request is on, as the limiter sees it: its stable id (local
/// state), its name (Redis keys, header names) and its per-key caps.
#[derive(Debug, Clone, Copy)]
pub struct RouteLimits<'a> {
    pub id: RouteId,
    pub name: &'a str,
    pub caps: &'a Limits,
}
use window::Limits;

/// The outcome of a check: headers to send, and a rejection if refused.
pub type LimitResult = Result<Option<RateStatus>, (Rejection, Option<RateStatus>)>;

pub struct Limiter {
    redis: Option<Arc<RedisBackend>>,
    /// Set in batched mode: local counting, flushed to Redis.
    batched: Option<batched::BatchedLimiter>,
    batch_interval: Duration,
    local: MemoryLimiter,
    blocked: BlockCache,
    on_error: OnBackendError,
    timeout: Duration,
    probe_interval: Duration,
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
                metrics.ratelimit_master_changes.clone(),
            )?)),
        };
        let (batched, batch_interval) = match (&redis, rl.mode) {
            (Some(r), crate::config::RateLimitMode::Batched(every)) => {
                (Some(batched::BatchedLimiter::new(r.clone())), every)
            }
            _ => (None, Duration::from_secs(1)),
        };
        Ok(Limiter {
            redis,
            batched,
            batch_interval,
            local: MemoryLimiter::default(),
            blocked: BlockCache::default(),
            on_error: rl.on_backend_error,
            timeout: rl.timeout,
            probe_interval: rl.breaker_probe_interval,
            clock,
            metrics,
            health,
        })
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

    /// Checks and counts one request of `key` on `route`.
    /// `route`: `None` for a verify call without a route (key limits only).
    pub async fn check(&self, key: &KeyEntry, route: Option<RouteLimits<'_>>) -> LimitResult {
        // No route: an id no route has, so no route caps or blocks apply.
        let none = Limits::default();
        let (id, route, caps) =
            route.map_or((RouteId(u32::MAX), "", &none), |r| (r.id, r.name, r.caps));
        if key.limits().is_empty() && caps.is_empty() {
            return Ok(None);
        }
        let checks = plan(key.limits(), id, caps);
        if checks.is_empty() {
            return Ok(None);
        }
        let now = self.clock.now_ms().max(0) as u64;
        if let Some(block) = self.blocked.get(key.limit_id, id, now) {
            return Err(self.blocked_rejection(&checks, &block, route, now));
        }
        let spans: Vec<Span> = checks.iter().map(|c| Span::at(c.window, now)).collect();
        let verdict = match &self.redis {
            None => self.local.check(key.limit_id, &checks, &spans),
            Some(r) => match self.backend_check(r, key, &checks, &spans, route).await {
                Some(v) => v,
                None => match self.on_error {
                    OnBackendError::Local => self.local.check(key.limit_id, &checks, &spans),
                    OnBackendError::Allow => return Ok(None),
                    OnBackendError::Deny => {
                        let r = Rejection {
                            outcome: Outcome::RateLimitUnavailable,
                            detail: Detail::RetryAfter(1),
                        };
                        return Err((r, None));
                    }
                },
            },
        };
        self.conclude(key, &checks, verdict, route, now)
    }

    /// The Redis decision, exact or batched; `None` when Redis could not
    /// answer (and the fallback applies).
    async fn backend_check(
        &self,
        r: &RedisBackend,
        key: &KeyEntry,
        checks: &[Check],
        spans: &[Span],
        name: &str,
    ) -> Option<Verdict> {
        if r.breaker.is_open() {
            return None;
        }
        let Some(b) = &self.batched else {
            // Exact: one script call per request.
            let prefix = redis::key_prefix(key.limit_id);
            let call = r.check(&prefix, checks, spans, name, self.probe_timeout());
            let (allowed, counts) = self.guarded(r, call).await?;
            let mut v = decision::evaluate(checks, spans, &counts);
            if v.allowed != allowed {
                // A floating-point edge: Redis decided (and counted, or not); follow it.
                v.allowed = allowed;
                if !allowed && v.rejected_by.is_none() {
                    v.rejected_by = Some((0, 1_000));
                }
            }
            return Some(v);
        };
        if let Some(v) = b.try_check(key.limit_id, checks, spans, name) {
            return Some(v);
        }
        // First use of this key here: read its windows from Redis first.
        let sync = b.sync_key(key.limit_id, checks, spans, name, self.probe_timeout());
        self.guarded(r, sync).await?;
        b.try_check(key.limit_id, checks, spans, name)
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

    fn conclude(
        &self,
        key: &KeyEntry,
        checks: &[Check],
        v: Verdict,
        route: &str,
        now: u64,
    ) -> LimitResult {
        match v.rejected_by {
            Some((i, wait)) if !v.allowed => {
                let check = checks[i];
                self.blocked.insert(
                    key.limit_id,
                    check.scope,
                    Block {
                        until_ms: now.saturating_add(wait),
                        window: check.window,
                    },
                );
                let status = self.status(&v.windows, Some(i), route);
                let retry_after = wait.div_ceil(1000);
                let r = Rejection {
                    outcome: Outcome::RateLimited,
                    detail: Detail::RateLimited {
                        window: check.window,
                        retry_after,
                    },
                };
                Err((r, Some(status)))
            }
            _ => Ok(Some(self.status(&v.windows, None, route))),
        }
    }

    fn blocked_rejection(
        &self,
        checks: &[Check],
        block: &Block,
        route: &str,
        now: u64,
    ) -> (Rejection, Option<RateStatus>) {
        let wait = block.until_ms.saturating_sub(now);
        let retry_after = wait.div_ceil(1000).max(1);
        let windows: Vec<WindowStatus> = checks
            .iter()
            .map(|c| {
                let span = Span::at(c.window, now);
                WindowStatus {
                    check: *c,
                    remaining: if c.window == block.window { 0 } else { c.limit },
                    reset_secs: span.left_ms().div_ceil(1000),
                    window_secs: span.bucket.len_ms / 1000,
                }
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
        (r, Some(self.status(&windows, at, route)))
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
                    if let Some(b) = &self.batched {
                        b.sweep();
                    }
                    continue;
                }
                _ = stop.wait_for(|s| *s) => return,
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
    }
}
