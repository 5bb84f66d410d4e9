//! Redis over TLS with an ACL user, Redis Cluster and Redis Sentinel.

use std::time::{Duration, Instant};

use redis::AsyncCommands;

use super::blocking;
use crate::harness::redis_cluster::RedisCluster;
use crate::harness::redis_node::{poll, query, text};
use crate::harness::redis_sentinel::RedisSentinel;
use crate::harness::redis_tls::{self, RedisTls};
use crate::harness::tls::{TestCa, install_crypto_provider};

#[tokio::test]
async fn redis_tls_with_acl_user() {
    install_crypto_provider();
    let redis = blocking(|| RedisTls::start(&TestCa::new("keygate redis CA"))).await;
    let mut conn = redis
        .client()
        .get_multiplexed_async_connection()
        .await
        .expect("TLS connection");
    let _: () = conn.set("kg:tls", "yes").await.expect("SET");
    let v: String = conn.get("kg:tls").await.expect("GET");
    assert_eq!(v, "yes");
    let who: String = redis::cmd("ACL")
        .arg("WHOAMI")
        .query_async(&mut conn)
        .await
        .expect("ACL WHOAMI");
    assert_eq!(who, redis_tls::USER);

    let other = redis::TlsCertificates {
        client_tls: None,
        root_cert: Some(TestCa::new("unrelated CA").cert_pem().into_bytes()),
    };
    let wrong = redis::Client::build_with_tls(redis.url(), other).expect("client");
    let err = wrong
        .get_multiplexed_async_connection()
        .await
        .expect_err("a certificate from another CA");
    assert!(format!("{err:?}").contains("UnknownIssuer"), "{err:?}");
    let no_acl = redis.url().replace("kg:secretpw@", "");
    let anonymous = redis::Client::build_with_tls(
        no_acl,
        redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(redis.ca_pem()),
        },
    )
    .expect("client");
    let mut anon = anonymous
        .get_multiplexed_async_connection()
        .await
        .expect("TLS without auth");
    let denied: redis::RedisResult<String> = anon.get("kg:tls").await;
    assert!(denied.is_err(), "default user is off: {denied:?}");
}

#[tokio::test]
async fn redis_cluster_three_masters() {
    let cluster = blocking(RedisCluster::start).await;
    let keys = cluster.key_per_node("kg:cluster");
    assert_eq!(keys.len(), 3);
    let client = cluster.client();
    let mut conn = client.get_async_connection().await.expect("cluster conn");
    for (i, key) in keys.iter().enumerate() {
        let _: () = conn.set(key, i).await.expect("SET");
    }
    for (i, key) in keys.iter().enumerate() {
        let v: usize = conn.get(key).await.expect("GET");
        assert_eq!(v, i);
        // Stored on master i itself, not redirected.
        let local = cluster.cmd(i, &["GET", key]).expect("GET on its master");
        assert_eq!(text(&local), i.to_string(), "{key}");
    }
    let slots: usize = cluster
        .slot_ranges()
        .iter()
        .map(|&(a, b, _)| usize::from(b - a) + 1)
        .sum();
    assert_eq!(slots, 16384);
}

#[tokio::test]
async fn redis_sentinel_fails_over() {
    sentinel_fails_over(1).await;
}

#[tokio::test]
async fn redis_three_sentinels_fail_over() {
    sentinel_fails_over(3).await;
}

async fn sentinel_fails_over(sentinels: usize) {
    let mut s = blocking(move || RedisSentinel::start_with(sentinels)).await;
    assert_eq!(s.current_master_port(), Some(s.master_port()));
    let master_url = format!("redis://127.0.0.1:{}", s.master_port());
    query(&master_url, &["SET", "kg:sentinel", "before"]).expect("SET on master");
    // The key must be on the replica before the master dies, or the new
    // master cannot have it. WAIT alone is not enough here: right after the
    // first sync it answered 1 while the replica had not applied the write.
    query(&master_url, &["WAIT", "1", "2000"]).expect("WAIT");
    let replica_url = format!("redis://127.0.0.1:{}", s.replica_port());
    let replicated = poll(Duration::from_secs(10), || {
        let v = query(&replica_url, &["GET", "kg:sentinel"]).ok()?;
        (v == redis::Value::BulkString(b"before".to_vec())).then_some(())
    });
    assert!(
        replicated.is_some(),
        "write not on the replica:\n{}",
        s.replica_log()
    );
    let start = Instant::now();
    s.fail_master();
    let s = blocking(move || {
        let port = s.wait_for_failover(Duration::from_secs(20));
        assert_eq!(port, s.replica_port());
        s
    })
    .await;
    let took = start.elapsed();
    assert!(took < Duration::from_secs(10), "failover took {took:?}");
    eprintln!("failover with {sentinels} sentinel(s) took {took:?}");

    let mut client = redis::sentinel::SentinelClient::build(
        s.sentinel_urls(),
        s.master_name(),
        None,
        redis::sentinel::SentinelServerType::Master,
    )
    .expect("sentinel client");
    let mut conn = client.get_async_connection().await.expect("new master");
    let v: String = conn.get("kg:sentinel").await.expect("replicated key");
    assert_eq!(v, "before");
    let _: () = conn
        .set("kg:sentinel", "after")
        .await
        .expect("SET on new master");
}
