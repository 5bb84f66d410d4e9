//! Rate limits on a Redis master watched by a sentinel, through a real
//! failover (the master is killed): every request during the switch is
//! answered (admitted or limited, never a 5xx) with `on_backend_error =
//! "local"`, both gateways count the master change, and limits are exact
//! again afterwards.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use keygate::config::OnBackendError;
use keygate::config::file::TopologyName;
use keygate::service::CreatedKey;

use super::{
    BACKEND_ERRORS, blocking, burst, exact, hourly, key, ready_field, redis_backend, routed,
};
use crate::harness::redis_node::query;
use crate::harness::redis_sentinel::RedisSentinel;
use crate::harness::{TestConfig, TestGateway, Upstream, eventually, status};

const MASTER_CHANGES: &str = "keygate_ratelimit_master_changes_total";

/// Requests with `key` alternating over both gateways, 4 in flight, until
/// `stop`; returns every status.
async fn traffic(gws: [&TestGateway; 2], key: &str, stop: Arc<AtomicBool>) -> Vec<u16> {
    let worker = |w: usize| {
        let stop = stop.clone();
        async move {
            let mut seen = Vec::new();
            let mut i = w;
            while !stop.load(Ordering::Relaxed) {
                seen.push(status(gws[i % 2], key).await);
                i += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            seen
        }
    };
    let all = futures::future::join_all((0..4).map(worker)).await;
    all.into_iter().flatten().collect()
}

/// Both gateways have counted one master change and closed their breaker.
async fn followed(gws: [&TestGateway; 2]) -> bool {
    for gw in gws {
        let changed = crate::harness::metric_value(&gw.metrics().await, MASTER_CHANGES);
        if changed != Some(1.0) || ready_field(gw, "ratelimit").await != "healthy" {
            return false;
        }
    }
    true
}

async fn backend_errors(gws: [&TestGateway; 2]) -> [f64; 2] {
    [
        gws[0].metric(BACKEND_ERRORS).await,
        gws[1].metric(BACKEND_ERRORS).await,
    ]
}

/// L of N for `fresh` over both gateways, counted on the master at
/// `port`, with no backend error meanwhile.
async fn exact_again_on(port: u16, gws: [&TestGateway; 2], fresh: &CreatedKey) {
    let errors = backend_errors(gws).await;
    // The gap was real: both fell back to local counting at some point.
    assert!(
        errors.iter().all(|e| *e > 0.0),
        "no backend errors: {errors:?}"
    );
    let got = burst(&gws, fresh.secret.expose(), 60, 16).await;
    assert_eq!(got, exact(20, 60));
    assert_eq!(
        backend_errors(gws).await,
        errors,
        "backend errors after the failover"
    );
    let pattern = format!("kg:{{{}}}:k:hour:*", fresh.key.lineage_id);
    let url = format!("redis://127.0.0.1:{port}");
    let stored = query(&url, &["KEYS", &pattern]).expect("KEYS on the new master");
    let redis::Value::Array(stored) = stored else {
        panic!("KEYS: {stored:?}");
    };
    assert!(!stored.is_empty(), "no counters on the new master");
}

#[tokio::test]
async fn failover_answers_every_request_and_limits_are_exact_after_it() {
    let mut sentinel = blocking(RedisSentinel::start).await;
    let up = Upstream::start("a").await;
    let (sentinels, master_name) = (sentinel.sentinels(), sentinel.master_name());
    let cfg = routed(TestConfig::pg().await, &up).ratelimit(move |r| {
        redis_backend(r);
        r.topology = Some(TopologyName::Sentinel.into());
        r.sentinels = sentinels;
        r.master_name = Some(master_name.into());
        r.on_backend_error = Some(OnBackendError::Local.into());
        // Short enough to fall back quickly, long enough for a loaded machine.
        r.timeout = Some("1s".into());
        r.breaker_probe_interval = Some("200ms".into());
    });
    let keys = cfg.keys().await;
    let (busy, fresh) = (
        key(&keys, hourly(100_000)).await,
        key(&keys, hourly(20)).await,
    );
    let (a, b) = tokio::join!(cfg.start(), cfg.start());
    assert_eq!(status(&a, busy.secret.expose()).await, 200);
    assert_eq!(a.metric(MASTER_CHANGES).await, 0.0);

    let stop = Arc::new(AtomicBool::new(false));
    let during = traffic([&a, &b], busy.secret.expose(), stop.clone());
    let (ra, rb) = (&a, &b);
    let switch = async move {
        let killed = Instant::now();
        sentinel.fail_master();
        let failover = move || {
            (
                sentinel.wait_for_failover(Duration::from_secs(30)),
                sentinel,
            )
        };
        let (new_port, sentinel) = blocking(failover).await;
        let gateways = eventually(Duration::from_secs(20), || followed([ra, rb])).await;
        stop.store(true, Ordering::Relaxed);
        (new_port, sentinel, gateways, killed.elapsed())
    };
    let (statuses, (new_port, sentinel, gateways, took)) = tokio::join!(during, switch);
    assert!(
        gateways.is_some(),
        "the gateways did not follow the failover"
    );
    let answered = statuses.iter().filter(|s| matches!(s, 200 | 429)).count();
    assert_eq!(
        answered,
        statuses.len(),
        "statuses during the switch: {statuses:?}"
    );
    assert!(
        statuses.len() > 50,
        "only {} requests during the switch",
        statuses.len()
    );
    println!(
        "failover followed after {took:?}; {} requests answered meanwhile",
        statuses.len()
    );
    assert_eq!(new_port, sentinel.replica_port());

    exact_again_on(new_port, [&a, &b], &fresh).await;
    a.stop().await;
    b.stop().await;
    drop(sentinel);
}
