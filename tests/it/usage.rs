//! Usage records: exactly one row per request with the right fields, nothing
//! lost through a Postgres outage under load or a SIGTERM, spool bounds, and
//! the metrics exposition.

use crate::harness::{StoreKind, both_stores};
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use keygate::keys::model::KeySpec;
use keygate::store::UsageQuery;

use crate::harness::binary::Process;
use crate::harness::pg::{PgServer, fresh_db_on};
use crate::harness::{TestConfig, TestGateway, Upstream, eventually};

fn spec(owner: &str, scopes: &[&str]) -> KeySpec {
    KeySpec {
        scopes: scopes.iter().map(|s| s.to_string()).collect(),
        ..crate::harness::key_spec(owner)
    }
}

async fn rows(pool: &sqlx::PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM usage_events")
        .fetch_one(pool)
        .await
        .unwrap_or(-1)
}

async fn wait_rows(pool: &sqlx::PgPool, n: i64, timeout: Duration) -> i64 {
    let _ = eventually(timeout, || async { rows(pool).await >= n }).await;
    rows(pool).await
}

async fn n_requests_give_n_rows_with_the_right_fields(kind: StoreKind) {
    let up = Upstream::start("a").await;
    let cfg = TestConfig::new(kind)
        .await
        .upstream("a", &[up.addr], |_| {})
        .route("api", "/api", "a", |r| r.scopes = vec!["api:read".into()])
        .route("pub", "/pub", "a", TestConfig::public);
    let svc = cfg.keys().await;
    let a = svc
        .create(spec("acme", &["api:read"]), &"t".into())
        .await
        .expect("create");
    let b = svc
        .create(spec("other", &["nothing:here"]), &"t".into())
        .await
        .expect("create");
    let gw = cfg.start().await;
    let store = cfg.store().await;

    let mut sent: Vec<(String, u16)> = Vec::new();
    let plan: Vec<(&str, Option<&str>)> = [
        vec![("/api/x", Some(a.secret.expose())); 5],
        vec![("/api/x", None); 3],
        vec![("/api/x", Some("kg_not_a_key")); 2],
        vec![("/api/x", Some(b.secret.expose())); 2],
        vec![("/nowhere", None); 3],
        vec![("/pub/y", None); 1],
    ]
    .concat();
    for (i, (path, key)) in plan.iter().enumerate() {
        let mut req = gw
            .client
            .post(gw.url(path))
            .header("x-request-id", format!("usage-{i}"))
            .body("hello");
        if let Some(k) = key {
            req = req.header("x-api-key", *k);
        }
        let resp = req.send().await.expect("send");
        sent.push((
            resp.headers()["x-request-id"]
                .to_str()
                .expect("rid")
                .to_string(),
            resp.status().as_u16(),
        ));
    }
    let n = sent.len();
    let all = || async {
        store
            .usage_events(&UsageQuery {
                limit: 1000,
                ..UsageQuery::default()
            })
            .await
            .expect("usage")
    };
    let _ = eventually(Duration::from_secs(10), || async { all().await.len() >= n }).await;
    let rows = all().await;
    assert_eq!(rows.len(), n, "exactly one row per request");
    assert!(
        gw.metric_reaches("keygate_usage_events_total{result=\"written\"}", n as f64)
            .await
    );

    let ids: Vec<String> = rows.iter().map(|r| r.request_id.clone()).collect();
    assert_eq!(
        ids,
        sent.iter().map(|s| s.0.clone()).collect::<Vec<_>>(),
        "rows in request order, ids match"
    );
    let outcomes: Vec<&str> = rows.iter().map(|r| r.outcome.as_str()).collect();
    let want: Vec<&str> = [
        vec!["ok"; 5],
        vec!["missing_key"; 3],
        vec!["invalid_key"; 2],
        vec!["insufficient_scope"; 2],
        vec!["route_not_found"; 3],
        vec!["ok"],
    ]
    .concat();
    assert_eq!(outcomes, want);
    for (r, (_, status)) in rows.iter().zip(&sent) {
        assert_eq!(r.status, *status);
        assert_eq!(r.method, "POST");
        assert_eq!(r.client_ip, Some("127.0.0.1".parse().expect("ip")));
        assert!(r.latency_us > 0);
        assert!(r.bytes_out > 0);
    }
    let first = &rows[0];
    assert_eq!(first.key_id, Some(a.key.id));
    assert_eq!(first.owner_id.as_deref(), Some("acme"));
    assert_eq!(first.route.as_deref(), Some("api"));
    assert_eq!(first.bytes_in, 5);
    assert!(first.upstream_latency_us.is_some());
    assert_eq!(rows[5].key_id, None, "no key, no key id");
    assert_eq!(rows[10].key_id, Some(b.key.id), "refused keys are named");
    assert_eq!(rows[12].route, None);
    assert!(
        !format!("{rows:?}").contains(a.secret.expose()),
        "records never hold the key"
    );

    let a_key = svc.get(a.key.id).await.expect("key");
    assert_eq!(a_key.use_count, 5);
    assert!(a_key.last_used_at.is_some());
    assert_eq!(svc.get(b.key.id).await.expect("key").use_count, 2);
    let now = chrono::Utc::now();
    let buckets = store
        .usage_buckets(
            a.key.id,
            now - chrono::Duration::hours(2),
            now + chrono::Duration::hours(1),
            keygate::store::Granularity::Hour,
        )
        .await
        .expect("buckets");
    assert_eq!(
        buckets.iter().map(|b| b.requests).sum::<i64>(),
        5,
        "rollups add up"
    );
    // Replaying the same records adds nothing.
    store.write_usage(&rows).await.expect("replay");
    assert_eq!(all().await.len(), n);
    assert_eq!(svc.get(a.key.id).await.expect("key").use_count, 5);
    gw.stop().await;
}

/// Sends requests with unique request ids until `stop`; returns the ids that got a response.
fn load(
    gw_url: String,
    stop: Arc<AtomicBool>,
    workers: usize,
) -> tokio::task::JoinHandle<Vec<String>> {
    tokio::spawn(async move {
        let counter = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..workers)
            .map(|_| {
                let (url, stop, counter) = (gw_url.clone(), stop.clone(), counter.clone());
                tokio::spawn(async move {
                    let client = reqwest::Client::new();
                    let mut got = Vec::new();
                    while !stop.load(Ordering::Relaxed) {
                        let id = format!("load-{}", counter.fetch_add(1, Ordering::Relaxed));
                        if let Ok(resp) = client
                            .get(&url)
                            .header("x-request-id", &id)
                            .timeout(Duration::from_secs(5))
                            .send()
                            .await
                        {
                            if resp.status().is_success() && resp.bytes().await.is_ok() {
                                got.push(id);
                            }
                        }
                    }
                    got
                })
            })
            .collect();
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap_or_default());
        }
        all
    })
}

async fn request_ids(pool: &sqlx::PgPool) -> Vec<String> {
    sqlx::query_scalar("SELECT request_id FROM usage_events")
        .fetch_all(pool)
        .await
        .expect("ids")
}

#[tokio::test]
async fn postgres_outage_under_load_loses_and_duplicates_nothing() {
    let mut server = tokio::task::spawn_blocking(PgServer::start)
        .await
        .expect("join");
    let db = fresh_db_on(&server.admin_url()).await;
    let up = Upstream::start("a").await;
    let cfg = TestConfig::with_store(&db)
        .upstream("a", &[up.addr], |_| {})
        .route("p", "/", "a", TestConfig::public);
    let gw = cfg.start().await;
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = load(gw.url("/x"), stop.clone(), 4);
    tokio::time::sleep(Duration::from_millis(700)).await;
    server = tokio::task::spawn_blocking(move || {
        server.stop();
        server
    })
    .await
    .expect("join");
    // Longer than the store's 3 s connection timeout, so batches must spool.
    tokio::time::sleep(Duration::from_millis(4500)).await;
    server = tokio::task::spawn_blocking(move || {
        server.restart();
        server
    })
    .await
    .expect("join");
    tokio::time::sleep(Duration::from_millis(700)).await;
    stop.store(true, Ordering::Relaxed);
    let answered = traffic.await.expect("load");
    assert!(answered.len() > 100, "load ran: {}", answered.len());

    let pool = sqlx::PgPool::connect(&db).await.expect("pool");
    let n = wait_rows(&pool, answered.len() as i64, Duration::from_secs(20)).await;
    let ids = request_ids(&pool).await;
    let distinct: HashSet<&String> = ids.iter().collect();
    assert_eq!(distinct.len(), ids.len(), "no duplicates");
    let missing: Vec<&String> = answered
        .iter()
        .filter(|id| !distinct.contains(id))
        .collect();
    assert!(
        missing.is_empty(),
        "{} answered requests have no row, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    assert_eq!(n as usize, answered.len(), "no gaps, nothing extra");
    assert!(
        gw.metric("keygate_usage_events_total{result=\"spooled\"}")
            .await
            > 0.0,
        "the outage went through the spool"
    );
    assert_eq!(
        gw.metric("keygate_usage_events_total{result=\"dropped\"}")
            .await,
        0.0
    );
    gw.stop().await;
    drop(server);
}

#[tokio::test]
async fn sigterm_under_load_leaves_a_row_for_every_response() {
    let mut server = tokio::task::spawn_blocking(PgServer::start)
        .await
        .expect("join");
    let db = fresh_db_on(&server.admin_url()).await;
    let up = Upstream::start("a").await;
    let dir = tempfile::tempdir().expect("tmp");
    let config = dir.path().join("keygate.toml");
    let mut file = crate::harness::binary::serving_config(&db, up.addr);
    file.gateway.threads = Some(2);
    file.usage.flush_interval = Some("5s".into());
    crate::harness::binary::write_config(&config, &file);
    let env = [("KEYGATE_HASH_SECRET", crate::harness::gateway::HASH_SECRET)];
    let pool = sqlx::PgPool::connect(&db).await.expect("pool");

    // Round 1: Postgres up. The 5 s flush interval means records are still
    // queued when SIGTERM arrives; the stop must write them.
    let mut p = Process::serve(dir.path(), &config, &env);
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = load(format!("http://{}/x", p.proxy), stop.clone(), 4);
    tokio::time::sleep(Duration::from_millis(800)).await;
    p.signal(libc::SIGTERM);
    let p = tokio::task::spawn_blocking(move || {
        let exit = p.wait(Duration::from_secs(20)).expect("exited");
        assert!(exit.0.success(), "{exit:?}");
        p
    })
    .await
    .expect("join");
    stop.store(true, Ordering::Relaxed);
    let answered = traffic.await.expect("load");
    assert!(answered.len() > 50, "load ran: {}", answered.len());
    let ids: HashSet<String> = request_ids(&pool).await.into_iter().collect();
    let missing = answered.iter().filter(|id| !ids.contains(*id)).count();
    assert_eq!(
        missing, 0,
        "every answered request has a row right after exit"
    );
    drop(p);

    // Round 2: Postgres down at SIGTERM: the queue goes to the spool, and the
    // next start replays it.
    let before = rows(&pool).await;
    pool.close().await;
    let mut p = Process::serve(dir.path(), &config, &env);
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = load(format!("http://{}/x", p.proxy), stop.clone(), 4);
    tokio::time::sleep(Duration::from_millis(500)).await;
    server = tokio::task::spawn_blocking(move || {
        server.stop();
        server
    })
    .await
    .expect("join");
    tokio::time::sleep(Duration::from_millis(300)).await;
    p.signal(libc::SIGTERM);
    let p = tokio::task::spawn_blocking(move || {
        let exit = p.wait(Duration::from_secs(30)).expect("exited");
        assert!(exit.0.success(), "{exit:?}");
        p
    })
    .await
    .expect("join");
    stop.store(true, Ordering::Relaxed);
    let answered2 = traffic.await.expect("load");
    drop(p);
    let spooled: Vec<_> = std::fs::read_dir(dir.path().join("data/spool"))
        .expect("spool dir")
        .collect();
    assert!(
        !spooled.is_empty(),
        "the stop spooled what it could not write"
    );

    server = tokio::task::spawn_blocking(move || {
        server.restart();
        server
    })
    .await
    .expect("join");
    let p = Process::serve(dir.path(), &config, &env);
    let pool = sqlx::PgPool::connect(&db).await.expect("pool");
    let want = before + answered2.len() as i64;
    let n = wait_rows(&pool, want, Duration::from_secs(20)).await;
    let ids: HashSet<String> = request_ids(&pool).await.into_iter().collect();
    let missing = answered2.iter().filter(|id| !ids.contains(*id)).count();
    assert_eq!(
        missing, 0,
        "every answered request has a row after the restart replayed the spool"
    );
    assert!(n >= want);
    drop(p);
    drop(server);
}

#[tokio::test]
async fn a_full_spool_drops_and_counts_while_serving() {
    let dead = format!(
        "postgres://postgres@127.0.0.1:{}/nothing",
        crate::harness::procs::free_port()
    );
    let up = Upstream::start("a").await;
    let cfg = TestConfig::with_store(&dead)
        .upstream("a", &[up.addr], |_| {})
        .route("p", "/", "a", TestConfig::public)
        .with(|f| f.usage.spool_max_size = Some("8KiB".into()));
    let gw = cfg.start().await;
    let statuses: Vec<u16> = futures::future::join_all(
        (0..200).map(|_| async { gw.get("/x").send().await.expect("send").status().as_u16() }),
    )
    .await;
    assert!(
        statuses.iter().all(|s| *s == 200),
        "the gateway keeps serving"
    );
    let counted = eventually(Duration::from_secs(5), || async {
        gw.metric("keygate_usage_events_total{result=\"spooled\"}")
            .await
            + gw.metric("keygate_usage_events_total{result=\"dropped\"}")
                .await
            == 200.0
    })
    .await;
    assert!(
        counted.is_some(),
        "every record is either spooled or counted as dropped"
    );
    let dropped = gw
        .metric("keygate_usage_events_total{result=\"dropped\"}")
        .await;
    assert!(
        dropped > 100.0,
        "8 KiB holds few records; dropped {dropped}"
    );
    let used: u64 = std::fs::read_dir(cfg.spool_dir())
        .expect("dir")
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len())
        .sum();
    assert!(used <= 8 * 1024, "spool stays within its bound: {used}");
    gw.stop().await;
}

#[tokio::test]
async fn metrics_pass_promtool() {
    let up = Upstream::start("a").await;
    let cfg = TestConfig::pg()
        .await
        .upstream("a", &[up.addr], |_| {})
        .route("r", "/", "a", |_| {});
    let k = cfg
        .keys()
        .await
        .create(spec("o", &[]), &"t".into())
        .await
        .expect("create");
    let gw: TestGateway = cfg.start().await;
    for key in [k.secret.expose(), "kg_bad"] {
        gw.get("/x")
            .header("x-api-key", key)
            .send()
            .await
            .expect("send");
    }
    let text = gw.metrics().await;
    for name in [
        "keygate_requests_total",
        "keygate_request_duration_seconds",
        "keygate_auth_duration_seconds",
        "keygate_keys_loaded",
        "keygate_key_sync_age_seconds",
        "keygate_ratelimit_backend_errors_total",
        "keygate_ratelimit_degraded",
        "keygate_usage_events_total",
        "keygate_usage_queue_depth",
        "keygate_build_info",
    ] {
        assert!(text.contains(&format!("# TYPE {name} ")), "missing {name}");
    }
    assert!(
        !text.contains(k.secret.expose()) && !text.contains(&k.key.id.to_string()),
        "no per-key labels"
    );
    let promtool = crate::harness::procs::find("promtool", &[])
        .expect("promtool not found: install Debian's `prometheus` package");
    let mut child = std::process::Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool");
    use std::io::Write;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("promtool output");
    assert!(
        out.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    gw.stop().await;
}

both_stores!(n_requests_give_n_rows_with_the_right_fields,);
