//! Owners, credits, route-cap overrides and admin roles (CONTRACT §10), with
//! the real gateway, Postgres (or SQLite) and Redis.
//! `shared`: an owner's limits across keys and gateways, overrides, owner
//! metadata, disable within a second; `credits`: fixed and upstream-reported
//! costs, refill at the boundary, embedded mode across a restart;
//! `flush`: a Redis FLUSHALL mid-run and the free credit it grants;
//! `admin`: the owner and credits API, usage reports, roles; `cli`: the
//! `owners` and `keys credits` commands.

mod admin;
mod cli;
mod credits;
mod flush;
mod shared;

use keygate::config::file::RateLimitSection;
use keygate::credits::{CreditsInput, Refill};
use keygate::keys::model::KeySpec;
use keygate::owners::OwnerPatch;
use keygate::ratelimit::window::Limits;
use keygate::service::{CreatedKey, Services};

use crate::harness::redis::RedisServer;
use crate::harness::{TestConfig, TestGateway, Upstream};

const ACTOR: &str = "t";

async fn redis() -> RedisServer {
    tokio::task::spawn_blocking(RedisServer::start)
        .await
        .expect("join")
}

/// Exact Redis limits, strict: a slow Redis is a 503, never a quiet local count.
fn strict_redis(cfg: TestConfig, r: &RedisServer) -> TestConfig {
    cfg.redis(&r.url()).ratelimit(|s: &mut RateLimitSection| {
        s.timeout = Some("5s".into());
        s.on_backend_error = Some(keygate::config::OnBackendError::Deny.into());
    })
}

fn limit(minute: u64) -> Limits {
    Limits {
        minute: Some(minute),
        ..Limits::default()
    }
}

fn credits(remaining: i64, refill: Option<Refill>) -> Option<Option<CreditsInput>> {
    Some(Some(CreditsInput {
        remaining: Some(remaining),
        refill: Some(refill),
    }))
}

async fn owner(s: &Services, patch: OwnerPatch) {
    s.owners.create(patch, &ACTOR.into()).await.expect("owner");
}

async fn key(s: &Services, spec: KeySpec) -> CreatedKey {
    s.keys.create(spec, &ACTOR.into()).await.expect("key")
}

/// A key with its own credits.
async fn key_with_credits(
    s: &Services,
    spec: KeySpec,
    c: Option<Option<CreditsInput>>,
) -> CreatedKey {
    let mut patch = keygate::keys::model::KeyPatch::from(spec);
    patch.credits = c;
    s.keys.create(patch, &ACTOR.into()).await.expect("key")
}

/// One request: its status and `x-credits-remaining`.
async fn call(gw: &TestGateway, path: &str, key: &str) -> (u16, Option<i64>) {
    let resp = gw
        .get(path)
        .header("x-api-key", key)
        .send()
        .await
        .expect("send");
    let left = resp
        .headers()
        .get("x-credits-remaining")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    (resp.status().as_u16(), left)
}

/// `n` requests, at most `concurrency` in flight, spread over the gateways
/// and keys; the statuses.
async fn burst(
    gws: &[&TestGateway],
    path: &str,
    keys: &[&str],
    n: usize,
    concurrency: usize,
) -> Vec<u16> {
    use futures::StreamExt;
    futures::stream::iter(0..n)
        .map(|i| async move { call(gws[i % gws.len()], path, keys[i % keys.len()]).await.0 })
        .buffer_unordered(concurrency)
        .collect()
        .await
}

fn count(statuses: &[u16], s: u16) -> usize {
    statuses.iter().filter(|x| **x == s).count()
}

/// A Postgres config with a catch-all route `r` (cost 1) to `up`; `change`
/// adjusts it.
async fn routed(
    up: &Upstream,
    change: impl FnOnce(&mut keygate::config::file::RouteSection),
) -> TestConfig {
    TestConfig::pg()
        .await
        .upstream("a", &[up.addr], |_| {})
        .route("r", "/", "a", change)
}
