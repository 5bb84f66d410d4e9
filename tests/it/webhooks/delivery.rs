//! Each key change reaches each matching endpoint exactly once (by id) after
//! 500s and a timeout; filters with wildcards; dead letter and retry.

use std::time::Duration;

use keygate::owners::OwnerPatch;

use super::*;
use crate::harness::{StoreKind, TestConfig, key_spec};

const ACTOR: &str = "t";

/// Creates, updates, revokes, rotates and deletes keys and disables an
/// owner; returns the ids of the keys and the secrets made.
async fn changes(cfg: &TestConfig) -> Vec<String> {
    let s = cfg.services().await;
    let actor = ACTOR.to_string();
    let owner = OwnerPatch {
        id: Some("acme".into()),
        ..OwnerPatch::default()
    };
    s.owners.create(owner, &actor).await.expect("owner");
    let a = s.keys.create(key_spec("acme"), &actor).await.expect("a");
    let patch = keygate::keys::model::KeyPatch {
        name: Some("renamed".into()),
        ..Default::default()
    };
    s.keys
        .update(a.key.id, patch, &actor)
        .await
        .expect("update");
    s.keys
        .revoke(a.key.id, Some("test".into()), &actor)
        .await
        .expect("revoke");
    let b = s.keys.create(key_spec("acme"), &actor).await.expect("b");
    let rotated = s
        .keys
        .rotate(b.key.id, Duration::from_secs(60), &actor)
        .await
        .expect("rotate");
    s.keys.delete(b.key.id, &actor).await.expect("delete");
    let off = OwnerPatch {
        enabled: Some(false),
        ..OwnerPatch::default()
    };
    s.owners.update("acme", off, &actor).await.expect("disable");
    vec![
        a.secret.expose().to_owned(),
        b.secret.expose().to_owned(),
        rotated.secret.expose().to_owned(),
    ]
}

async fn every_change_once_per_endpoint(kind: StoreKind) {
    let a = Receiver::start(SECRET_A).await;
    let b = Receiver::start(SECRET_B).await;
    // a: 500, 500, then an answer slower than the 2 s timeout; b: 500 once.
    a.fail_next(2);
    a.slow_next(1, Duration::from_secs(3));
    b.fail_next(1);
    let hooks = vec![
        endpoint("all-keys", &a.url(), &["key.*"], "HOOK_SECRET_A"),
        endpoint(
            "ops",
            &b.url(),
            &["owner.*", "key.revoked"],
            "HOOK_SECRET_B",
        ),
    ];
    let cfg = with_hooks(TestConfig::new(kind).await, fast("1h"), hooks);
    let gw = cfg.start().await;
    let secrets = changes(&cfg).await;
    let want_a = [
        "key.created",
        "key.created",
        "key.deleted",
        "key.revoked",
        "key.rotated",
        "key.updated",
    ];
    let want_b = ["key.revoked", "owner.disabled"];
    assert!(
        until(30, || async { a.types() == want_a && b.types() == want_b }).await,
        "a: {:?}, b: {:?}",
        a.types(),
        b.types()
    );
    let revoked = a
        .events()
        .into_values()
        .find(|e| e["type"] == "key.revoked");
    let revoked = revoked.expect("revoked event");
    assert_eq!(revoked["data"]["owner_id"], "acme");
    assert_eq!(revoked["data"]["name"], "renamed");
    // The same revocation went to both endpoints under one id.
    let id_in = |r: &Receiver| {
        r.events()
            .into_iter()
            .find(|(_, e)| e["type"] == "key.revoked")
            .map(|(id, _)| id)
    };
    assert_eq!(id_in(&a), id_in(&b));
    // The log: one delivered row per (event, endpoint), nothing else left.
    assert!(
        until(5, || async {
            deliveries(gw.admin, "status=delivered").await.len() == want_a.len() + want_b.len()
        })
        .await
    );
    assert!(deliveries(gw.admin, "status=pending").await.is_empty());
    // Every attempt carried a valid signature; retries kept their id.
    let (ra, rb) = (a.received(), b.received());
    assert!(ra.iter().chain(&rb).all(|r| r.valid), "a bad signature");
    assert!(ra.len() >= want_a.len() + 3, "a saw {} requests", ra.len());
    assert_eq!(rb.len(), want_b.len() + 1);
    // The reference library agrees, and refuses a changed body.
    assert!(python_verify(SECRET_A, &ra).iter().all(|ok| *ok));
    assert!(python_verify(SECRET_B, &rb).iter().all(|ok| *ok));
    let mut forged = ra[0].clone();
    forged.raw = forged.raw.replace("key.", "kex.");
    assert_eq!(python_verify(SECRET_A, &[forged]), vec![false]);
    assert_eq!(python_verify(SECRET_B, &ra[..1]), vec![false]);
    // No payload carries a secret or a hash.
    for r in ra.iter().chain(&rb) {
        let text = r.body.to_string();
        assert!(!secrets.iter().any(|s| text.contains(s.as_str())), "{text}");
        assert!(!text.contains("hash"), "{text}");
        assert!(r.id.starts_with("evt_"), "{}", r.id);
        assert!(r.body["timestamp"].is_string() && r.body["data"].is_object());
    }
    let ops = deliveries(gw.admin, "endpoint=ops&event_type=owner.disabled").await;
    assert_eq!(ops.len(), 1);
    assert_eq!(ops[0]["attempts"], 1);
    let d = gw
        .metric("keygate_webhook_deliveries_total{result=\"delivered\"}")
        .await;
    assert_eq!(d, (want_a.len() + want_b.len()) as f64);
    assert!(
        gw.metric("keygate_webhook_deliveries_total{result=\"failed\"}")
            .await
            >= 4.0
    );
    assert!(
        gw.metric_reaches("keygate_webhook_outbox_backlog", 0.0)
            .await,
        "backlog"
    );
    gw.stop().await;
}

#[tokio::test]
async fn every_key_change_is_delivered_once_per_matching_endpoint_postgres() {
    every_change_once_per_endpoint(StoreKind::Postgres).await;
}

#[tokio::test]
async fn every_key_change_is_delivered_once_per_matching_endpoint_sqlite() {
    every_change_once_per_endpoint(StoreKind::Sqlite).await;
}

#[tokio::test]
async fn dead_letter_after_max_age_then_retry_via_the_api_delivers() {
    // A port nobody listens on yet: every attempt is refused.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = closed.local_addr().expect("addr");
    drop(closed);
    let url = format!("http://{addr}/hook");
    let hooks = vec![endpoint("down", &url, &["*"], "HOOK_SECRET_A")];
    let cfg = with_hooks(TestConfig::pg().await, fast("1s"), hooks);
    let gw = cfg.start().await;
    let s = cfg.services().await;
    let k = s
        .keys
        .create(key_spec("o"), &ACTOR.into())
        .await
        .expect("key");
    assert!(
        until(15, || async {
            deliveries(gw.admin, "status=dead").await.len() == 1
        })
        .await,
        "not dead-lettered: {:?}",
        deliveries(gw.admin, "").await
    );
    let dead = deliveries(gw.admin, "status=dead").await.remove(0);
    assert_eq!(dead["event_type"], "key.created");
    assert_eq!(dead["payload"]["data"]["key_id"], k.key.id.to_string());
    assert!(dead["attempts"].as_i64().unwrap_or(0) >= 2, "{dead}");
    assert!(dead["last_error"].as_str().is_some_and(|e| !e.is_empty()));
    assert!(
        gw.metric("keygate_webhook_deliveries_total{result=\"dead\"}")
            .await
            >= 1.0
    );

    let r = Receiver::start_on(addr, SECRET_A).await;
    let id = dead["id"].as_str().expect("id");
    let resp = reqwest::Client::new()
        .post(gw.admin_url(&format!("/v1/webhooks/deliveries/{id}/retry")))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("retry");
    assert_eq!(resp.status(), 200);
    assert!(until(10, || async { !r.received().is_empty() }).await);
    let got = r.received();
    assert_eq!(got[0].id, dead["event_id"].as_str().expect("event id"));
    assert!(got[0].valid);
    assert!(
        until(5, || async {
            deliveries(gw.admin, "status=delivered").await.len() == 1
        })
        .await
    );
    // An unknown delivery is a 404.
    let resp = reqwest::Client::new()
        .post(gw.admin_url(&format!(
            "/v1/webhooks/deliveries/{}/retry",
            uuid::Uuid::nil()
        )))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("retry");
    assert_eq!(resp.status(), 404);
    gw.stop().await;
}

#[tokio::test]
async fn config_names_bad_urls_events_and_missing_secrets() {
    let hooks = vec![
        endpoint(
            "x",
            "ftp://nowhere",
            &["key.*", "keys.made"],
            "HOOK_SECRET_A",
        ),
        endpoint("y", "http://127.0.0.1:9/h", &["*"], "NO_SUCH_VAR"),
    ];
    let cfg = TestConfig::pg().await.with(|f| f.webhook = hooks);
    let file = cfg.file().clone();
    let env = |k: &str| (k == "KEYGATE_HASH_SECRET").then(|| "x".repeat(40));
    let err = keygate::config::Config::from_file(file, std::path::Path::new("t.toml"), &env)
        .expect_err("invalid");
    let text = err.to_string();
    for want in [
        "webhook[0].url",
        "webhook[0].events[1]",
        "webhook[0].secret_env",
        "webhook[1].secret_env: environment variable NO_SUCH_VAR is not set",
    ] {
        assert!(text.contains(want), "{want} missing in {text}");
    }
}

#[tokio::test]
async fn the_cli_lists_deliveries_and_retries_one() {
    let hooks = vec![endpoint(
        "r",
        "http://127.0.0.1:9/hook",
        &["*"],
        "HOOK_SECRET_A",
    )];
    let cfg = with_hooks(TestConfig::pg().await, fast("1h"), hooks)
        .with(|f| f.keys.max_per_owner = Some(1));
    // No gateway runs: the delivery stays pending.
    let s = cfg.services().await;
    s.keys
        .create(key_spec("o"), &ACTOR.into())
        .await
        .expect("key");
    // A refused change (over max_per_owner) raises no event.
    s.keys
        .create(key_spec("o"), &ACTOR.into())
        .await
        .expect_err("over the limit");
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("keygate.toml");
    crate::harness::binary::write_config(&path, cfg.file());
    let env = [
        ("KEYGATE_HASH_SECRET", crate::harness::gateway::HASH_SECRET),
        ("HOOK_SECRET_A", SECRET_A),
    ];
    let run = |args: &[&str]| {
        let (path, env) = (path.clone(), env);
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        async move {
            tokio::task::spawn_blocking(move || {
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                crate::harness::binary::run(&path, &args, &env)
            })
            .await
            .expect("join")
        }
    };
    let (code, out, err) = run(&["webhooks", "deliveries", "--status", "pending", "--json"]).await;
    assert_eq!(code, 0, "{err}");
    let rows: Vec<serde_json::Value> = serde_json::from_str(&out).expect("json");
    assert_eq!(rows.len(), 1, "{out}");
    assert_eq!(rows[0]["event_type"], "key.created");
    let id = rows[0]["id"].as_str().expect("id").to_owned();
    let (code, out, _) = run(&["webhooks", "deliveries"]).await;
    assert_eq!(code, 0);
    assert!(out.contains(&id) && out.contains("key.created"), "{out}");
    let (code, out, err) = run(&["webhooks", "retry", &id]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&id), "{out}");
    let (code, _, _) = run(&["webhooks", "retry", "not-an-id"]).await;
    assert_eq!(code, 2);
    let (code, _, err) = run(&["webhooks", "retry", "00000000-0000-0000-0000-000000000000"]).await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("not found"), "{err}");
    let (code, _, _) = run(&["webhooks", "deliveries", "--status", "bogus"]).await;
    assert_eq!(code, 2);
}
