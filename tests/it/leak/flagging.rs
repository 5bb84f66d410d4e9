//! Flag mode (SQLite, embedded), and a trace-level log of the real binary
//! that never holds a reported token.

use std::time::Duration;

use super::*;
use crate::harness::binary::{self, Process};
use crate::harness::{StoreKind, status};

const URL: &str = "https://gist.github.com/someone/0123abcd";
const TOKEN: &str = "admin-token-flag";

#[tokio::test]
async fn flag_mode_marks_the_key_and_keeps_it_working() {
    let gh = signing_key();
    let keys = KeyServer::start(&[("gh-1", &gh)]).await;
    let up = Upstream::start("a").await;
    let cfg = scanning(TestConfig::new(StoreKind::Sqlite).await, &up, &keys)
        .env("KEYGATE_ADMIN_TOKEN", TOKEN)
        .with(|f| f.secret_scanning.action = Some(keygate::config::LeakAction::Flag.into()));
    let s = cfg.services().await;
    let k = acme_key(&s).await;
    let gw = cfg.start().await;
    let secret = k.secret.expose();
    let body = report(&[secret], URL);
    let (code, feedback) = post_signed(&gw, &body, "gh-1", &gh).await;
    assert_eq!(code, 200, "{feedback}");
    assert_eq!(feedback[0]["label"], "true_positive");
    assert_eq!(feedback[0]["token_hash"], token_hash(secret));

    let shown: Value = gw
        .client
        .get(gw.admin_url(&format!("/v1/keys/{}", k.key.id)))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("admin get")
        .json()
        .await
        .expect("json");
    assert_eq!(shown["status"], "active", "{shown}");
    assert!(shown["flagged_at"].is_string(), "{shown}");
    assert_eq!(shown["flagged_reason"], format!("leaked: {URL}"));
    assert_eq!(shown["revoked_at"], Value::Null);
    // The flag changes the key's row: the feed brings it to the table too,
    // and the key keeps working.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(status(&gw, secret).await, 200);
    let rows = audit_rows(&s, "key.flagged", Some(k.key.id)).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].actor, "secret-scanning");
    assert!(audit_rows(&s, "key.leaked", None).await.is_empty());

    let (code, again) = post_signed(&gw, &body, "gh-1", &gh).await;
    assert_eq!(
        (code, again[0]["label"].as_str()),
        (200, Some("true_positive"))
    );
    assert_eq!(
        audit_rows(&s, "key.flagged", None).await.len(),
        1,
        "not re-audited"
    );
    gw.stop().await;
}

#[tokio::test]
async fn no_log_line_at_trace_level_holds_a_reported_token() {
    let gh = signing_key();
    let keys = KeyServer::start(&[("gh-1", &gh)]).await;
    let up = Upstream::start("a").await;
    let dir = tempfile::tempdir().expect("tmp");
    let mut file = binary::trace_config(dir.path(), up.addr);
    file.secret_scanning.enabled = Some(true);
    file.secret_scanning.public_keys_url = Some(keys.url.clone());
    let config = dir.path().join("keygate.toml");
    binary::write_config(&config, &file);
    let key = binary::cli_key(&config, binary::TRACE_ENV);
    let stranger = keygate::auth::key::generate("kg").expect("key");
    let p = Process::serve(dir.path(), &config, binary::TRACE_ENV);
    let gw = TestGateway {
        running: None,
        client: reqwest::Client::new(),
        proxy: p.proxy,
        admin: p.admin,
    };
    let body = report(&[&key, stranger.expose()], URL);
    assert_eq!(
        post(&gw, &body, Some("gh-1"), Some("bm9wZQ==")).await.0,
        401
    );
    assert_eq!(post(&gw, &body, None, None).await.0, 401);
    let (code, feedback) = post_signed(&gw, &body, "gh-1", &gh).await;
    assert_eq!(code, 200, "{feedback}");
    assert_eq!(feedback[0]["label"], "true_positive");
    assert_eq!(post_signed(&gw, b"[{\"token\":", "gh-1", &gh).await.0, 400);
    let refused = crate::harness::eventually(Duration::from_secs(3), || async {
        status(&gw, &key).await == 401
    });
    assert!(refused.await.is_some(), "revoked (SQLite: by polling)");

    let p = p.terminate(Duration::from_secs(15)).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let logs = p.logs();
    let verbose = logs.iter().filter(|l| l.contains("\"TRACE\"")).count();
    assert!(verbose > 0, "the log was verbose: {} lines", logs.len());
    assert!(
        logs.iter().any(|l| l.contains("reported leaked")),
        "the revocation is logged (by key id)"
    );
    for token in [key.as_str(), stranger.expose()] {
        let tail = &token[token.len() - 16..];
        let leaks: Vec<&String> = logs.iter().filter(|l| l.contains(tail)).collect();
        assert!(leaks.is_empty(), "a token in the log:\n{leaks:#?}");
    }
}

#[tokio::test]
async fn a_leak_sends_one_key_leaked_webhook() {
    use crate::webhooks::{Receiver, SECRET_A, endpoint, fast, until, with_hooks};
    let gh = signing_key();
    let keys = KeyServer::start(&[("gh-1", &gh)]).await;
    let up = Upstream::start("a").await;
    let hook = Receiver::start(SECRET_A).await;
    let hooks = vec![endpoint(
        "leaks",
        &hook.url(),
        &["key.leaked"],
        "HOOK_SECRET_A",
    )];
    let cfg = with_hooks(scanning_config(&up, &keys).await, fast("1h"), hooks);
    let s = cfg.services().await;
    let k = acme_key(&s).await;
    let gw = cfg.start().await;
    let body = report(&[k.secret.expose()], URL);
    for _ in 0..2 {
        let (code, feedback) = post_signed(&gw, &body, "gh-1", &gh).await;
        assert_eq!(
            (code, feedback[0]["label"].as_str()),
            (200, Some("true_positive"))
        );
    }
    assert!(
        until(10, || async { hook.types() == ["key.leaked"] }).await,
        "{:?}",
        hook.types()
    );
    let event = hook.events().into_values().next().expect("event");
    assert_eq!(event["data"]["key_id"], k.key.id.to_string(), "{event}");
    assert!(hook.received().iter().all(|r| r.valid), "signed");
    let tail = &k.secret.expose()[k.secret.expose().len() - 16..];
    assert!(
        hook.received().iter().all(|r| !r.raw.contains(tail)),
        "no token"
    );
    eprintln!("key.leaked event: {event}");
    // Reported twice, revoked and announced once.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(hook.events().len(), 1, "{:?}", hook.types());
    gw.stop().await;
}
