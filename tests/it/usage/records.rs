//! One row per request, in request order, with the right fields; key use
//! counts and rollups; replaying records adds nothing.

use std::time::Duration;

use keygate::service::{CreatedKey, KeyService};
use keygate::store::{UsageQuery, UsageStore};
use keygate::usage::UsageRecord;

use super::spec;
use crate::harness::{StoreKind, TestConfig, TestGateway, Upstream, both_stores, eventually};

/// Every usage row in the store (up to 1000).
async fn all_rows(store: &dyn UsageStore) -> Vec<UsageRecord> {
    store
        .usage_events(&UsageQuery {
            limit: 1000,
            ..UsageQuery::default()
        })
        .await
        .expect("usage")
}

/// Sends the plan's requests in order; returns each response's request id and status.
async fn send_the_plan(gw: &TestGateway, a: &CreatedKey, b: &CreatedKey) -> Vec<(String, u16)> {
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
    sent
}

/// Waits for a row per request and checks every row's fields; returns the rows.
async fn one_row_per_request(
    gw: &TestGateway,
    store: &dyn UsageStore,
    sent: &[(String, u16)],
    a: &CreatedKey,
    b: &CreatedKey,
) -> Vec<UsageRecord> {
    let n = sent.len();
    let all = || all_rows(store);
    let _ = eventually(Duration::from_secs(10), || async { all().await.len() >= n }).await;
    let mut rows = all().await;
    assert_eq!(rows.len(), n, "exactly one row per request");
    // Ids are time-ordered per proxy thread; two requests served by two
    // threads within one millisecond may sort either way: order by the plan.
    let position = |r: &UsageRecord| sent.iter().position(|s| s.0 == r.request_id);
    rows.sort_by_key(|r| position(r));
    assert!(
        gw.metric_reaches("keygate_usage_events_total{result=\"written\"}", n as f64)
            .await
    );

    let ids: Vec<String> = rows.iter().map(|r| r.request_id.clone()).collect();
    assert_eq!(
        ids,
        sent.iter().map(|s| s.0.clone()).collect::<Vec<_>>(),
        "one row per request id"
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
    for (r, (_, status)) in rows.iter().zip(sent) {
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
    rows
}

/// The requests the hourly rollups count for `a` around now.
async fn rollup_requests(store: &dyn UsageStore, a: &CreatedKey) -> i64 {
    let now = chrono::Utc::now();
    let buckets = store
        .usage_buckets(
            &keygate::store::UsageSubject::Key(a.key.id),
            now - chrono::Duration::hours(2),
            now + chrono::Duration::hours(1),
            keygate::store::Granularity::Hour,
        )
        .await
        .expect("buckets");
    buckets.iter().map(|b| b.requests).sum()
}

/// The keys' use counts and the hourly rollups.
async fn use_counts_and_rollups(
    svc: &KeyService,
    store: &dyn UsageStore,
    a: &CreatedKey,
    b: &CreatedKey,
) {
    let a_key = svc.get(a.key.id).await.expect("key");
    assert_eq!(a_key.use_count, 5);
    assert!(a_key.last_used_at.is_some());
    assert_eq!(svc.get(b.key.id).await.expect("key").use_count, 2);
    assert_eq!(rollup_requests(store, a).await, 5, "rollups add up");
}

/// Replaying the same records adds nothing.
async fn replay_adds_nothing(
    svc: &KeyService,
    store: &dyn UsageStore,
    rows: &[UsageRecord],
    n: usize,
    a: &CreatedKey,
) {
    let all = || all_rows(store);
    store.write_usage(rows).await.expect("replay");
    assert_eq!(all().await.len(), n);
    assert_eq!(svc.get(a.key.id).await.expect("key").use_count, 5);

    // Old records with a new one among them: only the new one counts (on
    // Postgres the bulk copy refuses the batch, and the idempotent insert
    // writes the one row it lacks).
    let mut fresh = rows[0].clone();
    fresh.id = keygate::ids::uuid_v7();
    fresh.request_id = "usage-replayed-with-a-new-one".into();
    fresh.client_ip = Some("2001:db8::7".parse().expect("ip"));
    let mixed = [&rows[..3], std::slice::from_ref(&fresh), &rows[3..]].concat();
    assert_eq!(
        store.write_usage(&mixed).await.expect("mixed"),
        1,
        "one new"
    );
    let after = all().await;
    assert_eq!(after.len(), n + 1);
    let got = after
        .iter()
        .find(|r| r.id == fresh.id)
        .expect("the new row");
    assert_eq!(got, &fresh, "every field as written");
    assert_eq!(svc.get(a.key.id).await.expect("key").use_count, 6);
    assert_eq!(rollup_requests(store, a).await, 6);
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

    let sent = send_the_plan(&gw, &a, &b).await;
    let rows = one_row_per_request(&gw, store.as_ref(), &sent, &a, &b).await;
    use_counts_and_rollups(&svc, store.as_ref(), &a, &b).await;
    replay_adds_nothing(&svc, store.as_ref(), &rows, sent.len(), &a).await;
    gw.stop().await;
}

both_stores!(n_requests_give_n_rows_with_the_right_fields,);

/// A batch of many keys (Postgres writes its rollups and uses as one
/// statement each, not per row): every key gets its own counts, and
/// replaying the batch adds nothing.
async fn a_batch_of_many_keys_counts_each_key_once(kind: StoreKind) {
    let cfg = TestConfig::new(kind).await;
    let svc = cfg.keys().await;
    let store = cfg.store().await;
    let mut keys = Vec::new();
    for i in 0..10 {
        let owner = format!("owner-{i}");
        keys.push(
            svc.create(spec(&owner, &[]), &"t".into())
                .await
                .expect("create"),
        );
    }
    let now = chrono::Utc::now().timestamp_millis();
    let batch: Vec<UsageRecord> = (0..keys.len() * 3)
        .map(|i| {
            let k = &keys[i % keys.len()];
            UsageRecord {
                id: keygate::ids::uuid_v7(),
                request_id: format!("many-{i}"),
                ts_ms: now - i as i64,
                key_id: Some(k.key.id),
                owner_id: Some(k.key.spec.owner_id.as_str().into()),
                route: Some(if i % 2 == 0 { "api" } else { "other" }.into()),
                method: "GET".into(),
                status: 200,
                outcome: keygate::outcome::Outcome::Ok,
                latency_us: 10 + i as u64,
                upstream_latency_us: None,
                bytes_in: 0,
                bytes_out: 2,
                client_ip: None,
                deprecated_key: false,
                credits: 0,
                charged_to: None,
            }
        })
        .collect();
    let n = batch.len() as u64;
    assert_eq!(store.write_usage(&batch).await.expect("write"), n);
    assert_eq!(store.write_usage(&batch).await.expect("replay"), 0);
    // The same again as new records: onto the rollup rows the first made.
    let again: Vec<UsageRecord> = (batch.iter().cloned())
        .map(|r| UsageRecord {
            id: keygate::ids::uuid_v7(),
            ..r
        })
        .collect();
    assert_eq!(store.write_usage(&again).await.expect("again"), n);
    for k in &keys {
        let got = svc.get(k.key.id).await.expect("key");
        assert_eq!(got.use_count, 6, "{}'s uses", k.key.spec.owner_id);
        assert!(got.last_used_at.is_some());
        assert_eq!(rollup_requests(store.as_ref(), k).await, 6);
    }
    assert_eq!(all_rows(store.as_ref()).await.len(), 2 * batch.len());
}

both_stores!(a_batch_of_many_keys_counts_each_key_once,);
