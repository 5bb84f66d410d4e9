//! Rate limits through the real proxy, with a real Redis: exactness under
//! concurrency (one and two gateways), all-or-nothing counting, window resets
//! and the calendar month, headers, batched mode, the local over-limit cache.
//! `exactness`: the limit under concurrency and all-or-nothing counting;
//! `headers`: headers and route caps; `windows`: resets and the calendar
//! month; `batched`: batched mode; `leases`: exact mode's leases;
//! `local_cache`: the over-limit cache.
//! Redis failures are in `faults`.

mod batched;
mod combine;
mod exactness;
mod faults;
mod groups;
mod headers;
mod leases;
mod local_cache;
mod windows;

use keygate::keys::model::KeySpec;
use keygate::ratelimit::window::Limits;

use crate::harness::redis::RedisServer;
use crate::harness::{TestConfig, TestGateway, Upstream, status};

fn spec(limits: Limits) -> KeySpec {
    KeySpec {
        rate_limits: limits,
        ..crate::harness::key_spec("o")
    }
}

/// Creates a key with `limits` in the test's store.
async fn key(cfg: &TestConfig, limits: Limits) -> keygate::service::CreatedKey {
    cfg.keys()
        .await
        .create(spec(limits), &"t".into())
        .await
        .expect("create")
}

/// A Postgres-backed config with one catch-all route to `up`.
async fn routed(up: &Upstream) -> TestConfig {
    TestConfig::pg()
        .await
        .upstream("a", &[up.addr], |_| {})
        .route("r", "/", "a", |_| {})
}

async fn redis() -> RedisServer {
    tokio::task::spawn_blocking(RedisServer::start)
        .await
        .expect("join")
}

type Section = keygate::config::file::RateLimitSection;
/// Changes [`with_redis`] makes after its own.
type Extra = fn(&mut Section);

/// A Redis-backed `[ratelimit]` section with a timeout of 250 ms; `extra`
/// changes it further.
fn with_redis(cfg: TestConfig, r: &RedisServer, extra: impl FnOnce(&mut Section)) -> TestConfig {
    cfg.redis(&r.url()).ratelimit(|s| {
        s.timeout = Some("250ms".into());
        s.breaker_probe_interval = Some("200ms".into());
        extra(s);
    })
}

/// For the exactness tests: a slow Redis (a loaded test machine) must show up
/// as a 503, not as the per-instance fallback quietly admitting more.
fn strict(s: &mut Section) {
    s.timeout = Some("5s".into());
    s.on_backend_error = Some(keygate::config::OnBackendError::Deny.into());
}

/// Sends `n` requests with at most `concurrency` in flight; counts statuses.
async fn burst(
    gws: &[&TestGateway],
    key: &str,
    n: usize,
    concurrency: usize,
) -> (usize, usize, usize) {
    use futures::StreamExt;
    let results: Vec<u16> = futures::stream::iter(0..n)
        .map(|i| status(gws[i % gws.len()], key))
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let c = |s| results.iter().filter(|x| **x == s).count();
    (c(200), c(429), results.len() - c(200) - c(429))
}

/// Batched mode, strict as the exactness tests are (see [`strict`]).
fn batched(s: &mut Section) {
    s.mode = Some(keygate::config::file::ModeName::Batched.into());
    s.batch_interval = Some("20ms".into());
    strict(s);
}
