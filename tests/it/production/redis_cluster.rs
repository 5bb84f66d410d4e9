//! Rate limits on a real 3-master Redis Cluster (one cluster for the module):
//! exact over two gateways for keys whose counters live on every master,
//! script calls shared per hash slot, batched mode within its bound, and a cluster node behind a standalone URL
//! refused at start.

use std::sync::OnceLock;
use std::time::Duration;

use keygate::config::file::{ModeName, RateLimitSection, TopologyName};
use keygate::ratelimit::redis::key_prefix;
use keygate::ratelimit::window::Limits;
use keygate::service::{CreatedKey, KeyService};

use super::{
    BACKEND_ERRORS, blocking, burst, exact, hourly, key, redis_backend, refused, routed, strict,
};
use crate::harness::redis_cluster::RedisCluster;
use crate::harness::redis_node::text;
use crate::harness::{TestConfig, TestGateway, Upstream, status};

/// The module's cluster, started once on a plain thread.
async fn cluster() -> &'static RedisCluster {
    static CLUSTER: OnceLock<RedisCluster> = OnceLock::new();
    blocking(|| {
        CLUSTER.get_or_init(RedisCluster::start);
    })
    .await;
    CLUSTER.get().expect("cluster started")
}

/// `[ratelimit]` on the cluster, seeded with every node.
fn on_cluster(cluster: &RedisCluster) -> impl FnOnce(&mut RateLimitSection) {
    let nodes = cluster.nodes();
    move |r| {
        redis_backend(r);
        r.topology = Some(TopologyName::Cluster.into());
        r.nodes = nodes;
    }
}

/// Creates keys until every master holds `per_master` of them, placed by the
/// slot of their counters' hash tag (`kg:{<lineage id>}:`); returns each
/// with the index of its master.
async fn keys_on_every_master(
    keys: &KeyService,
    cluster: &RedisCluster,
    limits: Limits,
    per_master: usize,
) -> Vec<(usize, CreatedKey)> {
    let masters = cluster.nodes().len();
    let mut placed: Vec<(usize, CreatedKey)> = Vec::new();
    for _ in 0..100 {
        let on = |m: usize| placed.iter().filter(|(n, _)| *n == m).count();
        if (0..masters).all(|m| on(m) >= per_master) {
            return placed;
        }
        let k = key(keys, limits).await;
        let master = cluster.node_for_key(&key_prefix(k.key.lineage_id));
        if on(master) < per_master {
            placed.push((master, k));
        }
    }
    panic!("100 keys did not cover {masters} masters");
}

/// The sum of `key`'s hourly key-scope counters stored on master `node`
/// itself (`KEYS` on a node lists only its own keys).
fn counted_on(cluster: &RedisCluster, node: usize, key: &CreatedKey) -> i64 {
    let pattern = format!("kg:{{{}}}:k:hour:*", key.key.lineage_id);
    let redis::Value::Array(names) = cluster.cmd(node, &["KEYS", &pattern]).expect("KEYS") else {
        panic!("KEYS {pattern}: not an array");
    };
    names
        .iter()
        .map(|n| {
            let v = cluster.cmd(node, &["GET", &text(n)]).expect("GET");
            text(&v).parse::<i64>().expect("a counter")
        })
        .sum()
}

async fn backend_errors(gws: [&TestGateway; 2]) -> [f64; 2] {
    [
        gws[0].metric(BACKEND_ERRORS).await,
        gws[1].metric(BACKEND_ERRORS).await,
    ]
}

/// Two gateways on the cluster, `per_master` keys with `limit` an hour on
/// each master, `n` requests per key with `in_flight` at once: each key is
/// admitted exactly `limit` times and counted so on its own master. Returns
/// the gateways, and how many requests were admitted in all.
async fn exact_on_every_master(
    limit: usize,
    n: usize,
    per_master: usize,
    in_flight: usize,
) -> (TestGateway, TestGateway, usize) {
    let cluster = cluster().await;
    let up = Upstream::start("a").await;
    let cfg = routed(TestConfig::pg().await, &up).ratelimit(|r| {
        on_cluster(cluster)(r);
        strict(r);
    });
    let limits = hourly(limit as u64);
    let keys = keys_on_every_master(&cfg.keys().await, cluster, limits, per_master).await;
    let (a, b) = tokio::join!(cfg.start(), cfg.start());
    let gws = [&a, &b];
    let bursts = keys
        .iter()
        .map(|(_, k)| burst(&gws, k.secret.expose(), n, in_flight));
    let results = futures::future::join_all(bursts).await;
    for ((master, k), got) in keys.iter().zip(&results) {
        assert_eq!(*got, exact(limit, n), "key on master {master}");
        assert_eq!(
            counted_on(cluster, *master, k),
            limit as i64,
            "master {master}"
        );
    }
    (a, b, limit * keys.len())
}

/// L of N admitted over two gateways, for two keys on each of the three
/// masters at once; the counters are on the key's master; no backend error.
#[tokio::test]
async fn exact_over_two_gateways_with_keys_on_every_master() {
    let (a, b, _) = exact_on_every_master(20, 60, 2, 8).await;
    assert_eq!(backend_errors([&a, &b]).await, [0.0, 0.0]);
    a.stop().await;
    b.stop().await;
}

/// Leases on the cluster: a key on each master, two gateways, exactly the
/// limit admitted and counted on its master, most of it from leases.
#[tokio::test]
async fn leases_on_every_master_admit_exactly_the_limit() {
    let (a, b, admitted) = exact_on_every_master(640, 800, 1, 16).await;
    let leased = "keygate_ratelimit_leased_total";
    let from_leases = a.metric(leased).await + b.metric(leased).await;
    let admitted = admitted as f64;
    assert!(
        from_leases > admitted / 2.0,
        "{from_leases} of {admitted} from leases"
    );
    a.stop().await;
    b.stop().await;
}

/// On the cluster, requests share script calls per hash slot: a busy key on
/// each master, all admitted, every request counted once on its master in
/// fewer calls than requests. Leases off: every request is decided in Redis.
#[tokio::test]
async fn busy_keys_share_script_calls_per_slot() {
    let cluster = cluster().await;
    let up = Upstream::start("a").await;
    let cfg = routed(TestConfig::pg().await, &up).ratelimit(|r| {
        on_cluster(cluster)(r);
        strict(r);
        r.lease = Some(1);
    });
    let n = 150;
    let keys = keys_on_every_master(&cfg.keys().await, cluster, hourly(1_000_000), 1).await;
    let gw = cfg.start().await;
    let gws = [&gw];
    let bursts = keys
        .iter()
        .map(|(_, k)| burst(&gws, k.secret.expose(), n, 24));
    for ((master, k), got) in keys.iter().zip(futures::future::join_all(bursts).await) {
        assert_eq!(got, exact(n, n), "key on master {master}");
        assert_eq!(counted_on(cluster, *master, k), n as i64, "master {master}");
    }
    let calls = gw
        .metric("keygate_ratelimit_script_batch_requests_count")
        .await;
    let requests = gw
        .metric("keygate_ratelimit_script_batch_requests_sum")
        .await;
    assert_eq!(requests, (n * keys.len()) as f64);
    assert!(calls < requests, "{requests} requests took {calls} calls");
    gw.stop().await;
}

/// Batched mode on the cluster: two gateways over-admit within the batched
/// bound (as on one Redis), for a key on each master, with no backend error.
#[tokio::test]
async fn batched_over_two_gateways_stays_within_its_bound() {
    let cluster = cluster().await;
    let up = Upstream::start("a").await;
    let cfg = routed(TestConfig::pg().await, &up).ratelimit(|r| {
        on_cluster(cluster)(r);
        strict(r);
        r.mode = Some(ModeName::Batched.into());
        r.batch_interval = Some("20ms".into());
    });
    let limit = 40;
    let keys = keys_on_every_master(&cfg.keys().await, cluster, hourly(limit), 1).await;
    let (a, b) = tokio::join!(cfg.start(), cfg.start());
    // One request every 5 ms per key, alternating gateways: a couple per
    // gateway per 20 ms flush, so the bound is a handful over the limit.
    let paced = |k: &CreatedKey| {
        let (a, b, secret) = (&a, &b, k.secret.expose().to_string());
        async move {
            let mut admitted = 0;
            for i in 0..120 {
                let gw = if i % 2 == 0 { a } else { b };
                if status(gw, &secret).await == 200 {
                    admitted += 1;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            admitted
        }
    };
    let admitted = futures::future::join_all(keys.iter().map(|(_, k)| paced(k))).await;
    for ((master, _), got) in keys.iter().zip(&admitted) {
        assert!(
            (limit..=limit + 6).contains(got),
            "master {master}: admitted {got} against a limit of {limit}"
        );
    }
    assert_eq!(backend_errors([&a, &b]).await, [0.0, 0.0]);
    a.stop().await;
    b.stop().await;
}

/// A cluster node given as a standalone `url` is refused at start, saying
/// what to set: counting through one node would split counters across slots.
#[tokio::test]
async fn a_cluster_node_configured_as_standalone_is_refused_at_start() {
    let cluster = cluster().await;
    let node = cluster.nodes()[0].clone();
    let cfg = TestConfig::pg().await.redis(&node);
    let msg = refused(&cfg).await.to_string();
    assert!(
        msg.contains("ratelimit.url is a Redis Cluster node")
            && msg.contains("set topology = \"cluster\""),
        "{msg}"
    );
}
