//! Leases in exact mode (see `keygate::ratelimit::lease`): a busy key's
//! admissions are counted in Redis ahead and decided in memory, and the
//! gateways together still admit exactly the limit; the headers count one
//! by one across leases and routes; an unused lease is the price, never an
//! excess; a day's lease is small; a hung Redis costs one timeout.

use keygate::ratelimit::window::Limits;

use super::{burst, key, redis, routed, strict, with_redis};
use crate::harness::redis::RedisServer;
use crate::harness::{TestGateway, Upstream, status};

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

/// A key's requests on two routes without caps share one lease.
#[tokio::test]
async fn remaining_counts_down_by_one_across_leases_and_routes() {
    let r = redis().await;
    let up = Upstream::start("a").await;
    let cfg = routed(&up).await.route("s", "/s", "a", |_| {});
    let cfg = with_redis(cfg, &r, |s| s.lease = Some(8));
    let k = key(&cfg, hour(10_000)).await;
    let gw = cfg.start().await;
    let mut remaining = Vec::new();
    for i in 0..20 {
        let path = if i % 2 == 0 { "/x" } else { "/s/x" };
        let resp = gw
            .get(path)
            .header("x-api-key", k.secret.expose())
            .send()
            .await;
        let resp = resp.expect("send");
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

/// A lease of a day (or month) window is at most 1/1024 of its limit: a
/// lost lease cannot dent a quota for long.
#[tokio::test]
async fn a_day_windows_lease_is_a_thousandth_of_its_limit() {
    let r = redis().await;
    let up = Upstream::start("a").await;
    let cfg = with_redis(routed(&up).await, &r, |_| {});
    let day = key(
        &cfg,
        Limits {
            day: Some(2_048),
            ..Limits::default()
        },
    )
    .await;
    let hourly = key(&cfg, hour(2_048)).await;
    let gw = cfg.start().await;
    let counted = |k: &keygate::service::CreatedKey, window: &str| -> i64 {
        let pattern = format!("kg:{{{}}}:k:{window}:*", k.key.lineage_id);
        r.counters(&pattern).values().sum()
    };
    assert_eq!(status(&gw, day.secret.expose()).await, 200);
    assert_eq!(status(&gw, hourly.secret.expose()).await, 200);
    // min(64, 2048 / 16, 2048 / 1024) = 2 against min(64, 2048 / 16) = 64.
    assert_eq!(counted(&day, "day"), 2);
    assert_eq!(counted(&hourly, "hour"), 64);
    gw.stop().await;
}

/// Redis hangs while a busy key's lease is used up: the request asking for
/// the next lease waits the timeout, and those waiting for it fall back at
/// once instead of asking Redis again.
#[tokio::test]
async fn waiting_for_a_lease_from_a_hung_redis_costs_one_timeout() {
    let r = redis().await;
    let up = Upstream::start("a").await;
    let cfg = with_redis(routed(&up).await, &r, |s| {
        s.lease = Some(8);
        s.timeout = Some("1s".into());
        s.on_backend_error = Some(keygate::config::OnBackendError::Local.into());
    });
    let k = key(&cfg, hour(100_000)).await;
    let gw = cfg.start().await;
    for _ in 0..16 {
        assert_eq!(status(&gw, k.secret.expose()).await, 200);
    }
    r.pause();
    let timed = |_| async {
        let t = std::time::Instant::now();
        (status(&gw, k.secret.expose()).await, t.elapsed())
    };
    let got = futures::future::join_all((0..8).map(timed)).await;
    r.resume();
    let bound = std::time::Duration::from_millis(1_750);
    assert!(
        got.iter().all(|(s, t)| *s == 200 && *t < bound),
        "each answered by the fallback within one timeout: {got:?}"
    );
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

/// Gateway `a` has made one request of a key limited to 320 an hour: the
/// first ask was granted min(64, 320 / 16) = 20, so 1 is used and 19 held.
/// Then `end` ends it; the returned gateway `b` sends 400 requests.
async fn after_one_leased_request(
    end: impl AsyncFnOnce(TestGateway, &RedisServer, &str),
) -> (usize, usize, usize) {
    let r = redis().await;
    let up = Upstream::start("a").await;
    let cfg = with_redis(routed(&up).await, &r, strict);
    let k = key(&cfg, hour(320)).await;
    let a = cfg.start().await;
    assert_eq!(status(&a, k.secret.expose()).await, 200);
    let counters = format!("kg:{{{}}}:k:hour:*", k.key.lineage_id);
    end(a, &r, &counters).await;
    let b = cfg.start().await;
    let got = burst(&[&b], k.secret.expose(), 400, 16).await;
    b.stop().await;
    got
}

/// A gateway gone without stopping (as if killed) leaves its lease counted:
/// the other admits the limit less that lease, never more.
#[tokio::test]
async fn a_lost_lease_is_counted_and_never_an_excess() {
    // Dropped, not stopped: its background work is aborted, nothing given back.
    let got = after_one_leased_request(async |a, _, _| drop(a)).await;
    assert_eq!(got, (320 - 20, 100, 0));
}

/// A gateway that stops gives what it held unused back: the other then
/// admits the whole limit less the one request made.
#[tokio::test]
async fn a_stopped_gateway_gives_its_unused_lease_back() {
    let got = after_one_leased_request(async |a, r, counters| {
        let counted = || r.counters(counters).values().sum::<i64>();
        assert_eq!(counted(), 20, "a lease of 20");
        a.stop().await;
        assert_eq!(counted(), 1, "19 given back");
    })
    .await;
    assert_eq!(got, (319, 81, 0));
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
