//! `[ratelimit]`: where counters live, how Redis is used, and what happens
//! when it fails.

use std::time::Duration;

use super::Env;
use super::checker::Checker;
use super::redis::RedisFields;
use crate::config::file::{BackendName, ModeName, RateLimitSection};
use crate::config::{RateLimitBackend, RateLimitConfig, RateLimitMode, env};

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            mode: RateLimitMode::Exact,
            backend: RateLimitBackend::Memory,
            timeout: Duration::from_millis(50),
            on_backend_error: Default::default(),
            breaker_failures: 3,
            breaker_probe_interval: Duration::from_millis(500),
            lease: RateLimitConfig::DEFAULT_LEASE,
        }
    }
}

impl RateLimitConfig {
    /// How often batched mode flushes when `batch_interval` is not set.
    pub const DEFAULT_BATCH_INTERVAL: Duration = Duration::from_millis(20);
    /// Admissions one lease takes at most when `lease` is not set.
    pub const DEFAULT_LEASE: u64 = 64;
    /// The largest `lease` accepted.
    pub const MAX_LEASE: u64 = 4096;
}

impl Checker {
    pub(super) fn ratelimit(&mut self, r: RateLimitSection, env: Env<'_>) -> RateLimitConfig {
        let d = RateLimitConfig::default();
        let redis = RedisFields {
            url: env(env::REDIS_URL).or(r.url),
            topology: r.topology,
            nodes: r.nodes,
            sentinels: r.sentinels,
            master_name: r.master_name,
            tls_ca_file: r.tls_ca_file,
        };
        let backend = match self.parsed("ratelimit.backend", r.backend) {
            Some(BackendName::Redis) => self
                .redis(redis)
                .map(RateLimitBackend::Redis)
                .unwrap_or(d.backend),
            Some(BackendName::Memory) | None => {
                if redis.any() {
                    self.problem(
                        "ratelimit.backend",
                        "Redis settings are given but backend is not \"redis\"",
                    );
                }
                d.backend
            }
        };
        let on_backend_error = self
            .parsed("ratelimit.on_backend_error", r.on_backend_error)
            .unwrap_or(d.on_backend_error);
        let breaker_failures = self.at_least_one(
            "ratelimit.breaker_failures",
            r.breaker_failures,
            d.breaker_failures,
        );
        let batched = r.batch_interval.is_some();
        let mode = match self.parsed("ratelimit.mode", r.mode) {
            Some(ModeName::Batched) => RateLimitMode::Batched(self.duration(
                "ratelimit.batch_interval",
                r.batch_interval,
                RateLimitConfig::DEFAULT_BATCH_INTERVAL,
            )),
            Some(ModeName::Exact) | None => d.mode,
        };
        if batched && mode == RateLimitMode::Exact {
            self.problem(
                "ratelimit.batch_interval",
                "only applies with mode = \"batched\"",
            );
        }
        let lease = self.lease(r.lease, &backend, mode);
        RateLimitConfig {
            lease,
            mode,
            backend,
            timeout: self.duration("ratelimit.timeout", r.timeout, d.timeout),
            on_backend_error,
            breaker_failures,
            breaker_probe_interval: self.duration(
                "ratelimit.breaker_probe_interval",
                r.breaker_probe_interval,
                d.breaker_probe_interval,
            ),
        }
    }

    /// `ratelimit.lease`: 1 to 4096, and only where it applies.
    fn lease(
        &mut self,
        lease: Option<u64>,
        backend: &RateLimitBackend,
        mode: RateLimitMode,
    ) -> u64 {
        let d = RateLimitConfig::DEFAULT_LEASE;
        let Some(n) = lease else { return d };
        if !matches!(backend, RateLimitBackend::Redis(_)) || mode != RateLimitMode::Exact {
            self.problem(
                "ratelimit.lease",
                "only applies with backend = \"redis\" and mode = \"exact\"",
            );
            return d;
        }
        if !(1..=RateLimitConfig::MAX_LEASE).contains(&n) {
            self.problem(
                "ratelimit.lease",
                format!("must be 1 (no leases) to {}", RateLimitConfig::MAX_LEASE),
            );
            return d;
        }
        n
    }
}
