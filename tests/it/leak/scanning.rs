//! Secret scanning in revoke mode on Postgres with two gateways.

use std::time::Duration;

use serde_json::Value;

use super::*;
use crate::harness::{eventually, get_with_key, status};

const URL: &str = "https://github.com/acme/app/blob/main/.env";

/// The feedback's `(token_hash, label)`s, checking that no raw token is echoed.
fn labels(feedback: &Value) -> Vec<(String, String)> {
    let text = |v: &Value| v.as_str().unwrap_or("").to_string();
    let list = feedback.as_array().expect("a list");
    list.iter()
        .map(|f| {
            assert!(f.get("token_raw").is_none(), "no raw token echoed: {f}");
            assert_eq!(f["token_type"], "keygate_api_key");
            (text(&f["token_hash"]), text(&f["label"]))
        })
        .collect()
}

#[tokio::test]
async fn a_reported_key_is_refused_by_two_gateways_within_a_second() {
    let gh = signing_key();
    let keys = KeyServer::start(&[("gh-1", &gh)]).await;
    let up = Upstream::start("a").await;
    let cfg = scanning_config(&up, &keys).await;
    let s = cfg.services().await;
    let (leaked, other) = (acme_key(&s).await, acme_key(&s).await);
    let (a, b) = tokio::join!(cfg.start(), cfg.start());
    let secret = leaked.secret.expose();
    assert_eq!(
        (status(&a, secret).await, status(&b, secret).await),
        (200, 200)
    );

    // Not ours: a well-formed keygate key nobody created, and a GitHub token.
    let stranger = keygate::auth::key::generate("kg").expect("key");
    let tokens = [
        secret,
        stranger.expose(),
        "ghp_abcdefghijklmnopqrstuvwxyz0123456789",
    ];
    let body = report(&tokens, URL);
    let (code, feedback) = post_signed(&a, &body, "gh-1", &gh).await;
    assert_eq!(code, 200, "{feedback}");
    let tokens_labelled =
        |l: &str| format!("keygate_secret_scanning_tokens_total{{label=\"{l}\"}}");
    assert_eq!(a.metric(&tokens_labelled("true_positive")).await, 1.0);
    assert_eq!(a.metric(&tokens_labelled("false_positive")).await, 2.0);
    assert_eq!(
        a.metric("keygate_secret_scanning_reports_total{result=\"answered\"}")
            .await,
        1.0
    );
    let want = [
        (token_hash(tokens[0]), "true_positive"),
        (token_hash(tokens[1]), "false_positive"),
        (token_hash(tokens[2]), "false_positive"),
    ];
    assert_eq!(labels(&feedback), want.map(|(h, l)| (h, l.to_string())));

    let took = eventually(Duration::from_secs(1), || async {
        status(&a, secret).await == 401 && status(&b, secret).await == 401
    })
    .await;
    assert!(took.is_some(), "both gateways refuse the key within 1 s");
    eprintln!("leaked key refused by both gateways {took:?} after the answer");
    let resp = get_with_key(&b, secret).await;
    let (code, refusal) = crate::harness::error_code(resp).await;
    assert_eq!(
        (code, refusal["error"]["code"].as_str()),
        (401, Some("revoked_key"))
    );
    assert_eq!(status(&a, other.secret.expose()).await, 200, "others work");

    let record = s.keys.get(leaked.key.id).await.expect("get");
    let reason = format!("leaked: {URL}");
    assert_eq!(
        record.state.revoked_reason.as_deref(),
        Some(reason.as_str())
    );
    let rows = audit_rows(&s, "key.leaked", Some(leaked.key.id)).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].actor, "secret-scanning");

    // Reported again (GitHub retries): still a true positive, not re-audited.
    let (code, again) = post_signed(&b, &body, "gh-1", &gh).await;
    assert_eq!(
        (code, again[0]["label"].as_str()),
        (200, Some("true_positive"))
    );
    assert_eq!(audit_rows(&s, "key.leaked", None).await.len(), 1);
    assert_eq!(keys.fetches(), 2, "one fetch per gateway");
    a.stop().await;
    b.stop().await;
}

/// What each refused report gets: (status, nothing changed).
async fn refused(gw: &TestGateway, body: &[u8], id: Option<&str>, sig: Option<&str>) -> u16 {
    post(gw, body, id, sig).await.0
}

#[tokio::test]
async fn forged_unsigned_unknown_and_changed_reports_change_nothing() {
    let (gh, forger) = (signing_key(), signing_key());
    let keys = KeyServer::start(&[("gh-1", &gh)]).await;
    let up = Upstream::start("a").await;
    let cfg = scanning_config(&up, &keys).await;
    let s = cfg.services().await;
    let k = acme_key(&s).await;
    let gw = cfg.start().await;
    let secret = k.secret.expose();
    let body = report(&[secret], URL);
    let signed = sign(&gh, &body);

    assert_eq!(refused(&gw, &body, None, None).await, 401, "unsigned");
    assert_eq!(
        refused(&gw, &body, Some("gh-1"), None).await,
        401,
        "no signature"
    );
    assert_eq!(
        refused(&gw, &body, None, Some(&signed)).await,
        401,
        "no key id"
    );
    let forged = sign(&forger, &body);
    assert_eq!(
        refused(&gw, &body, Some("gh-1"), Some(&forged)).await,
        401,
        "forged"
    );
    assert_eq!(
        refused(&gw, &body, Some("gh-9"), Some(&signed)).await,
        401,
        "unknown key id"
    );
    assert_eq!(
        refused(&gw, &body, Some("gh-1"), Some("bm9wZQ==")).await,
        401,
        "not DER"
    );
    assert_eq!(
        refused(&gw, &body, Some("gh-1"), Some("%%%")).await,
        401,
        "not base64"
    );
    // A genuine signature replayed over a changed body.
    let changed = report(&[secret], "https://github.com/acme/app/blob/main/other");
    assert_eq!(
        refused(&gw, &changed, Some("gh-1"), Some(&signed)).await,
        401,
        "changed body"
    );
    let mut appended = body.clone();
    appended.push(b' ');
    assert_eq!(
        refused(&gw, &appended, Some("gh-1"), Some(&signed)).await,
        401,
        "one byte more"
    );
    // Signed but not a report; signed but too large.
    let (code, _) = post_signed(&gw, b"{\"token\": 1", "gh-1", &gh).await;
    assert_eq!(code, 400, "malformed JSON");
    let (code, _) = post_signed(&gw, br#"{"token": "x"}"#, "gh-1", &gh).await;
    assert_eq!(code, 400, "an object, not a list");
    let big = report(&[secret; 1200], URL);
    assert!(big.len() > 64 << 10);
    let (code, _) = post_signed(&gw, &big, "gh-1", &gh).await;
    assert_eq!(code, 413, "oversized");
    let get = gw.get(PATH).send().await.expect("get");
    assert_eq!(get.status().as_u16(), 405);

    assert_eq!(status(&gw, secret).await, 200, "the key still works");
    let record = s.keys.get(k.key.id).await.expect("get");
    assert_eq!(record.state.revoked_at, None);
    assert!(audit_rows(&s, "key.leaked", None).await.is_empty());
    // The malformed ones were signed with a known key: no fetch beyond the first.
    assert_eq!(keys.fetches(), 1);
    // Counted by result: nine refused signatures, the malformed, oversized and GET ones.
    let reports = |r: &str| format!("keygate_secret_scanning_reports_total{{result=\"{r}\"}}");
    assert_eq!(gw.metric(&reports("unauthorized")).await, 9.0);
    assert_eq!(gw.metric(&reports("refused")).await, 4.0);
    assert_eq!(gw.metric(&reports("answered")).await, 0.0);
    gw.stop().await;
}

#[tokio::test]
async fn a_flood_of_unknown_identifiers_fetches_the_keys_once_per_interval() {
    let gh = signing_key();
    let keys = KeyServer::start(&[("gh-1", &gh)]).await;
    let up = Upstream::start("a").await;
    let cfg = scanning_config(&up, &keys).await;
    let gw = cfg.start().await;
    let body = report(&["nothing"], URL);
    let (code, _) = post_signed(&gw, &body, "gh-1", &gh).await;
    assert_eq!(code, 200);
    assert_eq!(keys.fetches(), 1);
    use futures::StreamExt;
    let statuses: Vec<u16> = futures::stream::iter(0..300)
        .map(|i| {
            let (gw, body, gh) = (&gw, &body, &gh);
            async move { post_signed(gw, body, &format!("made-up-{i}"), gh).await.0 }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    assert!(statuses.iter().all(|s| *s == 401), "{statuses:?}");
    assert_eq!(
        keys.fetches(),
        1,
        "within keys_refetch_min_interval: no fetch"
    );
    gw.stop().await;

    // With a short interval, a key GitHub adds later is fetched on first use,
    // and a flood still costs at most one fetch per interval.
    let cfg = cfg.with(|f| f.secret_scanning.keys_refetch_min_interval = Some("200ms".into()));
    let gw = cfg.start().await;
    let before = keys.fetches();
    let started = std::time::Instant::now();
    let flood = futures::stream::iter(0..400)
        .map(|i| {
            let (gw, body, gh) = (&gw, &body, &gh);
            async move { post_signed(gw, body, &format!("made-up-{i}"), gh).await.0 }
        })
        .buffer_unordered(16)
        .collect::<Vec<u16>>()
        .await;
    let intervals = started.elapsed().as_millis() as usize / 200;
    assert!(flood.iter().all(|s| *s == 401));
    let fetched = keys.fetches() - before;
    assert!(
        fetched <= intervals + 1,
        "{fetched} fetches for {} reports over {intervals} intervals",
        flood.len()
    );
    let rotated = signing_key();
    keys.add("gh-2", &rotated);
    let accepted = eventually(Duration::from_secs(3), || async {
        post_signed(&gw, &body, "gh-2", &rotated).await.0 == 200
    })
    .await;
    assert!(
        accepted.is_some(),
        "a new key is fetched on an unknown identifier"
    );
    gw.stop().await;
}

#[tokio::test]
async fn the_endpoint_is_off_by_default() {
    let up = Upstream::start("a").await;
    let cfg = TestConfig::pg()
        .await
        .upstream("a", &[up.addr], |_| {})
        .route("r", "/", "a", TestConfig::public);
    let gw = cfg.start().await;
    let (code, body) = post(&gw, b"[]", Some("gh-1"), Some("x")).await;
    assert_eq!(code, 200, "proxied like any request: {body}");
    assert_eq!(body, Value::String("upstream a".into()));
    gw.stop().await;
}
