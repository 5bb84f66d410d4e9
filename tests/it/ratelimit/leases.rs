//! Leases in exact mode (see `keygate::ratelimit::lease`): a busy key's
//! admissions are counted in Redis ahead and decided in memory, and the
//! gateways together still admit exactly the limit; the headers count one
//! by one across leases; an unused lease is the price, never an excess.

use keygate::ratelimit::window::Limits;

use super::{burst, key, redis, routed, strict, with_redis};
use crate::harness::{TestGateway, Upstream, get_with_key, status};

fn hour(limit: u64) -> Limits {
    Limits {
        hour: Some(limit),
        ..Limits::default()
    }
}

async fn leased(gw: &TestGateway) -> f64 {
    gw.metric("keygate_ratelimit_leased_total").await
}

/// An hour window: a burst of a few seconds does not straddle its bucket.
#[tokio::test]
async fn two_gateways_on_leases_admit_exactly_the_limit_with_few_script_calls() {
    let r = redis().await;
    let up = Upstream::start("a").await;
    let cfg = with_redis(routed(&up).await, &r, strict);
    let k = key(&cfg, hour(3_000)).await;
    let (a, b) = tokio::join!(cfg.start(), cfg.start());
    let before = r.calls("evalsha");
    let got = burst(&[&a, &b], k.secret.expose(), 3_600, 64).await;
    assert_eq!(got, (3_000, 600, 0));
    let calls = r.calls("evalsha") - before;
    let from_leases = leased(&a).await + leased(&b).await;
    eprintln!("3,000 admitted: {calls} script calls, {from_leases} from leases");
    assert!(
        from_leases >= 1_500.0,
        "most admissions come from leases: {from_leases}"
    );
    assert!(calls < 1_000, "{calls} script calls for 3,600 requests");
    let counted: i64 = r
        .counters(&format!("kg:{{{}}}:k:hour:*", k.key.lineage_id))
        .values()
        .sum();
    assert_eq!(counted, 3_000, "every admission counted once, none unused");
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn remaining_counts_down_by_one_across_leases() {
    let r = redis().await;
    let up = Upstream::start("a").await;
    let cfg = with_redis(routed(&up).await, &r, |s| s.lease = Some(8));
    let k = key(&cfg, hour(10_000)).await;
    let gw = cfg.start().await;
    let mut remaining = Vec::new();
    for _ in 0..20 {
        let resp = get_with_key(&gw, k.secret.expose()).await;
        assert_eq!(resp.status(), 200);
        let h = resp.headers()["x-ratelimit-remaining"]
            .to_str()
            .map(str::to_owned);
        remaining.push(h.expect("ascii").parse::<u64>().expect("a number"));
    }
    let want: Vec<u64> = (9_980..10_000).rev().collect();
    assert_eq!(remaining, want);
    // 20 requests on leases of 8: the asks were 1st, 9th and 17th.
    assert_eq!(leased(&gw).await, 17.0);
    gw.stop().await;
}

#[tokio::test]
async fn lease_1_decides_every_request_in_redis() {
    let r = redis().await;
    let up = Upstream::start("a").await;
    let cfg = with_redis(routed(&up).await, &r, |s| s.lease = Some(1));
    let k = key(&cfg, hour(10_000)).await;
    let gw = cfg.start().await;
    let before = r.calls("evalsha");
    for _ in 0..30 {
        assert_eq!(status(&gw, k.secret.expose()).await, 200);
    }
    assert_eq!(r.calls("evalsha") - before, 30);
    assert_eq!(leased(&gw).await, 0.0);
    gw.stop().await;
}

/// A gateway that stops with a lease leaves it counted: the other admits the
/// limit less that lease, never more. The lease was a sixteenth of the room.
#[tokio::test]
async fn an_unused_lease_is_counted_and_never_an_excess() {
    let r = redis().await;
    let up = Upstream::start("a").await;
    let cfg = with_redis(routed(&up).await, &r, strict);
    let k = key(&cfg, hour(320)).await;
    let a = cfg.start().await;
    assert_eq!(status(&a, k.secret.expose()).await, 200);
    a.stop().await;
    // The first ask was granted min(64, 320 / 16) = 20: 1 used, 19 held by `a`.
    let b = cfg.start().await;
    let got = burst(&[&b], k.secret.expose(), 400, 16).await;
    assert_eq!(got, (320 - 20, 100, 0));
    b.stop().await;
}

/// What a gateway holds was counted before Redis went away: it admits that
/// much without Redis, then `on_backend_error` applies as without leases.
#[tokio::test]
async fn a_lease_admits_through_an_outage_then_the_fallback_applies() {
    let mut r = redis().await;
    let up = Upstream::start("a").await;
    let cfg = with_redis(routed(&up).await, &r, |s| {
        s.lease = Some(16);
        s.on_backend_error = Some(keygate::config::OnBackendError::Local.into());
    });
    let k = key(&cfg, hour(10_000)).await;
    let gw = cfg.start().await;
    assert_eq!(status(&gw, k.secret.expose()).await, 200);
    r.kill();
    for _ in 0..15 {
        assert_eq!(status(&gw, k.secret.expose()).await, 200);
    }
    assert_eq!(leased(&gw).await, 15.0);
    let errors = "keygate_ratelimit_backend_errors_total";
    assert_eq!(
        gw.metric(errors).await,
        0.0,
        "no call while the lease lasts"
    );
    assert_eq!(
        status(&gw, k.secret.expose()).await,
        200,
        "the local fallback"
    );
    assert!(gw.metric(errors).await >= 1.0);
    gw.stop().await;
}
