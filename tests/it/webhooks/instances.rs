//! Two gateways on one Postgres never both deliver an event; a gateway
//! SIGKILLed mid-delivery delivers it after a restart, under the same id.

use std::collections::HashMap;
use std::time::Duration;

use super::*;
use crate::harness::binary::{self, Process};
use crate::harness::gateway::HASH_SECRET;
use crate::harness::{TestConfig, Upstream, key_spec};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_on_one_postgres_never_both_deliver_an_event() {
    let r = Receiver::start(SECRET_A).await;
    let hooks = vec![endpoint("r", &r.url(), &["key.created"], "HOOK_SECRET_A")];
    let mut tuning = fast("1h");
    tuning.batch_size = Some(3);
    let cfg = with_hooks(TestConfig::pg().await, tuning, hooks);
    let (a, b) = tokio::join!(cfg.start(), cfg.start());
    let s = cfg.services().await;
    const N: usize = 60;
    for _ in 0..N {
        s.keys
            .create(key_spec("o"), &"t".into())
            .await
            .expect("key");
    }
    assert!(
        until(30, || async { r.events().len() == N }).await,
        "{} of {N}",
        r.events().len()
    );
    let mut per_id: HashMap<String, usize> = HashMap::new();
    for got in r.received() {
        *per_id.entry(got.id).or_default() += 1;
    }
    let twice: Vec<_> = per_id.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "delivered more than once: {twice:?}");
    let series = "keygate_webhook_deliveries_total{result=\"delivered\"}";
    let (da, db) = (a.metric(series).await, b.metric(series).await);
    assert_eq!(da + db, N as f64);
    // Both took part (each claims up to 3 per poll).
    assert!(da > 0.0 && db > 0.0, "a {da}, b {db}");
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_killed_mid_delivery_delivers_after_a_restart_with_the_same_id() {
    let r = Receiver::start(SECRET_A).await;
    // The first attempt is held (longer than the test); the gateway dies
    // while it waits for the answer.
    r.slow_next(1, Duration::from_secs(60));
    let db = crate::harness::pg::fresh_db().await;
    let up = Upstream::start("a").await;
    let dir = tempfile::tempdir().expect("tmp");
    let config = dir.path().join("keygate.toml");
    let mut file = binary::serving_config(&db, up.addr);
    let mut tuning = fast("1h");
    // Lease: 2 x timeout + 2 s = 8 s.
    tuning.timeout = Some("3s".into());
    file.webhooks = tuning;
    file.webhook = vec![endpoint("r", &r.url(), &["*"], "HOOK_SECRET_A")];
    binary::write_config(&config, &file);
    let env: Vec<(&str, &str)> = vec![
        ("KEYGATE_HASH_SECRET", HASH_SECRET),
        ("HOOK_SECRET_A", SECRET_A),
    ];
    let serve = {
        let (dir, config, env) = (dir.path().to_owned(), config.clone(), env.clone());
        move || {
            let env: Vec<(&str, &str)> = env.clone();
            Process::serve(&dir, &config, &env)
        }
    };
    let first = tokio::task::spawn_blocking(serve.clone())
        .await
        .expect("join");
    // The writer's configuration decides the endpoints (as the gateway's does).
    let hooks = vec![endpoint("r", &r.url(), &["*"], "HOOK_SECRET_A")];
    let cfg = with_hooks(TestConfig::with_store(&db), fast("1h"), hooks);
    let k = cfg
        .services()
        .await
        .keys
        .create(key_spec("o"), &"t".into())
        .await
        .expect("key");
    assert!(
        until(10, || async { !r.received().is_empty() }).await,
        "no attempt"
    );
    first.signal(libc::SIGKILL);
    drop(first);
    let held = r.received()[0].id.clone();

    let second = tokio::task::spawn_blocking(serve).await.expect("join");
    assert!(
        until(30, || async { r.received().len() >= 2 }).await,
        "not redelivered: {:?}",
        second.logs()
    );
    let got = r.received();
    assert!(got.iter().all(|g| g.id == held && g.valid), "{got:?}");
    assert_eq!(r.events().len(), 1, "the receiver dedupes to one event");
    let event = &r.events()[&held];
    assert_eq!(event["type"], "key.created");
    assert_eq!(event["data"]["key_id"], k.key.id.to_string());
    let pool = sqlx::PgPool::connect(&db).await.expect("pool");
    let rows: Vec<(String, String)> =
        sqlx::query_as("SELECT event_id, status FROM webhook_deliveries")
            .fetch_all(&pool)
            .await
            .expect("rows");
    assert!(
        until(5, || async {
            let s: Vec<(String,)> = sqlx::query_as("SELECT status FROM webhook_deliveries")
                .fetch_all(&pool)
                .await
                .expect("rows");
            s == vec![("delivered".to_string(),)]
        })
        .await,
        "{rows:?}"
    );
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].0, held);
}
