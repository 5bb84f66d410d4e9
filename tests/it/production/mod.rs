//! The gateway on production-style backends (issue 13's "Must show"), each a
//! real component started by the harness: a 3-master Redis Cluster, Redis
//! Sentinel with a real failover, Redis over TLS with an ACL user, PgBouncer
//! in transaction pooling, Postgres with TLS.
//!
//! `redis_cluster`: exactness over two gateways with keys on every master,
//! batched mode, a cluster node behind a standalone URL refused;
//! `redis_sentinel`: failover under traffic; `redis_tls`: rediss:// with a CA
//! file, a wrong CA; `pgbouncer`: revocation, usage and migrations through a
//! transaction pooler, a deaf LISTEN; `postgres_tls`: verify-full, wrong CA,
//! host mismatch, a server without TLS.

mod pgbouncer;
mod postgres_tls;
mod redis_cluster;
mod redis_sentinel;
mod redis_tls;

use keygate::Gateway;
use keygate::config::OnBackendError;
use keygate::config::file::{BackendName, RateLimitSection};
use keygate::gateway::GatewayError;
use keygate::keys::model::KeySpec;
use keygate::ratelimit::window::Limits;
use keygate::service::{CreatedKey, KeyService};

use crate::harness::{TestConfig, TestGateway, Upstream, key_spec, status};

/// Runs a blocking harness constructor off the async runtime.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.expect("start service")
}

/// `cfg` with one catch-all route `r` to `up`.
fn routed(cfg: TestConfig, up: &Upstream) -> TestConfig {
    cfg.upstream("a", &[up.addr], |_| {})
        .route("r", "/", "a", |_| {})
}

/// An hourly limit (a burst straddles no bucket boundary in practice).
fn hourly(n: u64) -> Limits {
    Limits {
        hour: Some(n),
        ..Limits::default()
    }
}

/// Creates a key with `limits`.
async fn key(keys: &KeyService, limits: Limits) -> CreatedKey {
    let spec = KeySpec {
        rate_limits: limits,
        ..key_spec("o")
    };
    keys.create(spec, &"t".into()).await.expect("create key")
}

/// Redis as the rate-limit backend, with nothing else set.
fn redis_backend(r: &mut RateLimitSection) {
    r.backend = Some(BackendName::Redis.into());
}

/// For exactness: a slow Redis (a loaded test machine) must show up as a 503,
/// never as the per-instance fallback quietly admitting more.
fn strict(r: &mut RateLimitSection) {
    r.timeout = Some("5s".into());
    r.on_backend_error = Some(OnBackendError::Deny.into());
}

/// Statuses of a burst: admitted, limited, anything else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Burst {
    ok: usize,
    limited: usize,
    other: usize,
}

/// Sends `n` requests with `key`, alternating over `gws`, at most
/// `concurrency` in flight.
async fn burst(gws: &[&TestGateway], key: &str, n: usize, concurrency: usize) -> Burst {
    use futures::StreamExt;
    let results: Vec<u16> = futures::stream::iter(0..n)
        .map(|i| status(gws[i % gws.len()], key))
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let count = |s| results.iter().filter(|x| **x == s).count();
    Burst {
        ok: count(200),
        limited: count(429),
        other: results.len() - count(200) - count(429),
    }
}

/// `L` admitted, the rest limited, nothing else.
fn exact(limit: usize, n: usize) -> Burst {
    Burst {
        ok: limit,
        limited: n - limit,
        other: 0,
    }
}

const BACKEND_ERRORS: &str = "keygate_ratelimit_backend_errors_total";

/// `/readyz`'s field `name`, as text.
async fn ready_field(gw: &TestGateway, name: &str) -> String {
    let (_, body) = gw.readyz().await;
    body[name].as_str().unwrap_or_default().to_string()
}

/// Builds a gateway that must not start; returns why.
async fn refused(cfg: &TestConfig) -> GatewayError {
    match Gateway::build_with(cfg.build(), Default::default()).await {
        Ok(_) => panic!("the gateway started:\n{}", cfg.toml()),
        Err(e) => e,
    }
}
