//! The key table's sync with the store: push-based revocation across gateways,
//! no database I/O on the request path, Postgres outages warm and cold.

use crate::harness::{StoreKind, both_stores, get_with_key};
use std::time::{Duration, Instant};

use crate::harness::binary;
use crate::harness::pg::{PgServer, fresh_db_on};
use crate::harness::{TestConfig, Upstream, eventually, key_spec, status};

async fn cli_revocation_reaches_two_gateways_in_under_a_second(kind: StoreKind) {
    let up = Upstream::start("a").await;
    // A long poll interval: only the push path can make this fast.
    let cfg = TestConfig::new(kind)
        .await
        .with(|f| f.keys.sync_interval = Some("1h".into()))
        .upstream("a", &[up.addr], |_| {})
        .route("r", "/", "a", |_| {});
    let k = cfg
        .keys()
        .await
        .create(key_spec("o"), &"t".into())
        .await
        .expect("create");
    let (a, b) = tokio::join!(cfg.start(), cfg.start());
    assert_eq!(status(&a, k.secret.expose()).await, 200);
    assert_eq!(status(&b, k.secret.expose()).await, 200);

    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("keygate.toml");
    binary::write_config(&path, &binary::store_config(cfg.db_url()));
    let id = k.key.id.to_string();
    let (code, out, err) = tokio::task::spawn_blocking(move || {
        binary::run(
            &path,
            &["keys", "revoke", &id, "--reason", "leaked"],
            &[("KEYGATE_HASH_SECRET", crate::harness::gateway::HASH_SECRET)],
        )
    })
    .await
    .expect("join");
    assert_eq!(code, 0, "{out}{err}");
    let revoked_at = Instant::now();
    let secret = k.secret.expose();
    let (ta, tb) = tokio::join!(
        eventually(Duration::from_secs(3), || async {
            status(&a, secret).await == 401
        }),
        eventually(Duration::from_secs(3), || async {
            status(&b, secret).await == 401
        }),
    );
    let total = revoked_at.elapsed();
    assert!(
        ta.is_some() && tb.is_some(),
        "both gateways enforce the revocation"
    );
    assert!(total < Duration::from_secs(1), "revocation took {total:?}");
    println!(
        "revocation enforced by both gateways after {:?} / {:?}",
        ta.unwrap_or_default(),
        tb.unwrap_or_default()
    );
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn random_and_malformed_keys_cause_no_postgres_queries() {
    let server = tokio::task::spawn_blocking(|| {
        PgServer::start_with(&["log_statement=all", "log_line_prefix=%d| "])
    })
    .await
    .expect("join");
    let db_url = fresh_db_on(&server.admin_url()).await;
    let db = db_url.rsplit('/').next().expect("db name").to_string();
    let up = Upstream::start("a").await;
    // No periodic work in the window: resync and usage flushes wait an hour.
    let cfg = TestConfig::with_store(&db_url)
        .with(|f| f.keys.sync_interval = Some("1h".into()))
        .with(|f| f.usage.flush_interval = Some("1h".into()))
        .upstream("a", &[up.addr], |_| {})
        .route("r", "/", "a", |_| {});
    let valid = cfg
        .keys()
        .await
        .create(key_spec("o"), &"t".into())
        .await
        .expect("create");
    let gw = cfg.start().await;
    assert_eq!(status(&gw, valid.secret.expose()).await, 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let statements = |log: &str| {
        log.lines()
            // Simple-protocol statements log as `statement:`, prepared ones
            // (every sqlx query with parameters) as `execute <name>:`.
            .filter(|l| {
                l.starts_with(&format!("{db}|"))
                    && (l.contains("statement:") || l.contains("execute "))
            })
            .count()
    };
    let before = statements(&server.log());

    let mut requests = Vec::new();
    for i in 0..300 {
        let key = match i % 3 {
            0 => keygate::auth::key::generate("kg")
                .expect("key")
                .expose()
                .to_string(),
            1 => format!("kg_{}", "x".repeat(i % 50)),
            _ => valid.secret.expose().to_string(),
        };
        requests.push(key);
    }
    let results = futures::future::join_all(requests.iter().map(|k| status(&gw, k))).await;
    assert_eq!(results.iter().filter(|s| **s == 401).count(), 200);
    assert_eq!(results.iter().filter(|s| **s == 200).count(), 100);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = statements(&server.log());
    assert_eq!(after, before, "requests caused database statements");

    // Control: the log does see a key change and the gateway's sync.
    cfg.keys()
        .await
        .create(key_spec("o2"), &"t".into())
        .await
        .expect("create");
    let seen = eventually(Duration::from_secs(3), || async {
        statements(&server.log()) > after
    })
    .await;
    assert!(seen.is_some(), "the statement log works");
    gw.stop().await;
}

#[tokio::test]
async fn postgres_outage_while_warm_keeps_serving_from_the_table() {
    let mut server = tokio::task::spawn_blocking(PgServer::start)
        .await
        .expect("join");
    let db_url = fresh_db_on(&server.admin_url()).await;
    let up = Upstream::start("a").await;
    let cfg = TestConfig::with_store(&db_url)
        .upstream("a", &[up.addr], |_| {})
        .route("r", "/", "a", |_| {});
    let k = cfg
        .keys()
        .await
        .create(key_spec("o"), &"t".into())
        .await
        .expect("create");
    let gw = cfg.start().await;
    assert_eq!(status(&gw, k.secret.expose()).await, 200);

    let mut server = tokio::task::spawn_blocking(move || {
        server.stop();
        server
    })
    .await
    .expect("join");
    let unknown = keygate::auth::key::generate("kg").expect("key");
    for _ in 0..5 {
        assert_eq!(
            status(&gw, k.secret.expose()).await,
            200,
            "a known key keeps working"
        );
        assert_eq!(
            status(&gw, unknown.expose()).await,
            401,
            "an unknown key stays invalid, not 503"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // The sync notices once its next poll fails (the pool retries refused
    // connections for up to 3 s before giving up).
    let noticed = eventually(Duration::from_secs(10), || async {
        gw.readyz().await.1["store"] == "unreachable"
    })
    .await;
    assert!(noticed.is_some(), "readyz reports the store unreachable");
    assert_eq!(
        status(&gw, k.secret.expose()).await,
        200,
        "a known key still works"
    );
    let ready = gw.readyz().await.1;
    assert_eq!(ready["status"], "ready", "a warm gateway keeps serving");

    // Back again: changes made after the outage arrive.
    server = tokio::task::spawn_blocking(move || {
        server.restart();
        server
    })
    .await
    .expect("join");
    let k2 = cfg
        .keys()
        .await
        .create(key_spec("o"), &"t".into())
        .await
        .expect("create after restart");
    let seen = eventually(Duration::from_secs(10), || async {
        status(&gw, k2.secret.expose()).await == 200
    })
    .await;
    assert!(
        seen.is_some(),
        "the gateway reconnected and picked up a new key"
    );
    gw.stop().await;
    drop(server);
}

#[tokio::test]
async fn cold_start_without_postgres_is_not_ready_and_answers_503() {
    let mut server = tokio::task::spawn_blocking(PgServer::start)
        .await
        .expect("join");
    let db_url = fresh_db_on(&server.admin_url()).await;
    let up = Upstream::start("a").await;
    let cfg = TestConfig::with_store(&db_url)
        .upstream("a", &[up.addr], |_| {})
        .route("r", "/x", "a", |_| {})
        .route("pub", "/public", "a", TestConfig::public);
    let k = cfg
        .keys()
        .await
        .create(key_spec("o"), &"t".into())
        .await
        .expect("create");
    let mut server = tokio::task::spawn_blocking(move || {
        server.stop();
        server
    })
    .await
    .expect("join");

    let gw = cfg.start().await;
    assert_eq!(gw.readyz().await.0, 503);
    let resp = get_with_key(&gw, k.secret.expose()).await;
    assert_eq!(resp.status(), 503);
    let body: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(
        body["error"]["code"], "auth_unavailable",
        "never a misleading 401"
    );
    assert_eq!(
        status(&gw, "kg_nonsense").await,
        401,
        "a malformed key is invalid regardless"
    );
    assert_eq!(
        gw.get("/x").send().await.expect("send").status(),
        401,
        "missing key"
    );
    assert_eq!(
        gw.get("/public").send().await.expect("send").status(),
        200,
        "public routes need no store"
    );

    server = tokio::task::spawn_blocking(move || {
        server.restart();
        server
    })
    .await
    .expect("join");
    let ready = eventually(Duration::from_secs(10), || async {
        gw.readyz().await.0 == 200
    })
    .await;
    assert!(ready.is_some(), "ready once Postgres answers");
    assert_eq!(status(&gw, k.secret.expose()).await, 200);
    gw.stop().await;
    drop(server);
}

async fn deletes_and_new_keys_reach_a_running_gateway(kind: StoreKind) {
    let up = Upstream::start("a").await;
    let cfg = TestConfig::new(kind)
        .await
        .with(|f| f.keys.sync_interval = Some("1h".into()))
        .upstream("a", &[up.addr], |_| {})
        .route("r", "/", "a", |_| {});
    let svc = cfg.keys().await;
    let first = svc
        .create(key_spec("o"), &"t".into())
        .await
        .expect("create");
    let gw = cfg.start().await;
    assert!(gw.metric_reaches("keygate_keys_loaded", 1.0).await);
    let second = svc
        .create(key_spec("o"), &"t".into())
        .await
        .expect("create");
    let added = eventually(Duration::from_secs(2), || async {
        status(&gw, second.secret.expose()).await == 200
    })
    .await;
    assert!(added.is_some(), "a key created while running is accepted");
    svc.delete(first.key.id, &"t".into()).await.expect("delete");
    let gone = eventually(Duration::from_secs(2), || async {
        status(&gw, first.secret.expose()).await == 401
    })
    .await;
    assert!(gone.is_some(), "a deleted key disappears");
    assert!(gw.metric_reaches("keygate_keys_loaded", 1.0).await);
    let age = gw.metric("keygate_key_sync_age_seconds").await;
    assert!((0.0..5.0).contains(&age), "sync age {age}");
    gw.stop().await;
}

both_stores!(
    cli_revocation_reaches_two_gateways_in_under_a_second,
    deletes_and_new_keys_reach_a_running_gateway,
);
