//! Every key endpoint end to end: create and read, partial updates, bad
//! input, 404s, the per-owner cap, revocation, list filters, deletion.

use super::*;

/// A JSON body cut off mid-object.
const BROKEN_JSON: &str = "{\"owner_id\":";

/// Creates a key with every field and reads it back; returns its id.
async fn create_and_read(a: &Admin<'_>) -> String {
    let created = a
        .create(json!({"owner_id": "acme", "name": "one", "scopes": ["orders:read"], "rate_limits": {"minute": 100},
                       "metadata": {"plan": "gold"}, "tags": ["team-a"], "expires_in": "30d"}))
        .await;
    let id = created["key"]["id"].as_str().expect("id").to_string();
    let secret = created["secret"].as_str().expect("secret").to_string();
    assert!(keygate::auth::key::parse(&secret).is_ok());
    assert_eq!(created["key"]["status"], "active");

    let (s, got) = a.get(&format!("/v1/keys/{id}")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(got["name"], "one");
    assert!(
        !got.to_string().contains(&secret),
        "the secret is shown only at creation"
    );
    id
}

/// Partial update: only the given fields change; null clears the expiry.
async fn partial_updates(a: &Admin<'_>, id: &str) {
    let (s, upd) = a
        .send(
            reqwest::Method::PATCH,
            &format!("/v1/keys/{id}"),
            Some(json!({"name": "renamed", "expires_at": null})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{upd}");
    assert_eq!(upd["name"], "renamed");
    assert_eq!(upd["expires_at"], Value::Null);
    assert_eq!(upd["scopes"], json!(["orders:read"]));
    assert_eq!(upd["rate_limits"], json!({"minute": 100}));
    let (_, upd) = a
        .send(
            reqwest::Method::PATCH,
            &format!("/v1/keys/{id}"),
            Some(json!({"scopes": [], "enabled": false})),
        )
        .await;
    assert_eq!(
        (upd["scopes"].clone(), upd["status"].clone()),
        (json!([]), json!("disabled"))
    );
}

/// Bad input: the field's path, 400 for broken JSON, 422 for bad fields.
async fn bad_input(a: &Admin<'_>, id: &str) {
    let (s, v) = a
        .send(
            reqwest::Method::PATCH,
            &format!("/v1/keys/{id}"),
            Some(json!({"rate_limits": {"minute": "lots"}})),
        )
        .await;
    assert_eq!(
        (s, v["error"]["fields"][0]["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("rate_limits.minute"))
    );
    let (s, v) = a
        .send(
            reqwest::Method::PATCH,
            &format!("/v1/keys/{id}"),
            Some(json!({"colour": "red"})),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .expect("msg")
            .contains("colour")
    );
    let resp = a
        .req(reqwest::Method::POST, "/v1/keys")
        .header("content-type", "application/json")
        .body(BROKEN_JSON)
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let v: Value = resp.json().await.expect("json");
    assert_eq!(v["error"]["code"], "invalid_json");
    let (s, v) = a.post("/v1/keys", json!({"owner_id": "acme", "scopes": ["ok:read", "Bad Scope"], "allowed_cidrs": ["10.0.0.1/8"]})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    let fields: Vec<&str> = v["error"]["fields"]
        .as_array()
        .expect("fields")
        .iter()
        .filter_map(|f| f["field"].as_str())
        .collect();
    assert_eq!(fields, vec!["scopes[1]", "allowed_cidrs[0]"]);
}

/// 404s.
async fn not_found(a: &Admin<'_>) {
    let missing = uuid::Uuid::now_v7();
    for (m, path) in [
        (reqwest::Method::GET, format!("/v1/keys/{missing}")),
        (reqwest::Method::PATCH, format!("/v1/keys/{missing}")),
        (reqwest::Method::POST, format!("/v1/keys/{missing}/revoke")),
        (reqwest::Method::POST, format!("/v1/keys/{missing}/rotate")),
        (reqwest::Method::DELETE, format!("/v1/keys/{missing}")),
        (reqwest::Method::GET, format!("/v1/keys/{missing}/usage")),
        (reqwest::Method::GET, "/v1/keys/not-a-uuid".to_string()),
        (reqwest::Method::GET, "/v1/nothing".to_string()),
    ] {
        let body = (m == reqwest::Method::PATCH).then(|| json!({"name": "x"}));
        let (s, v) = a.send(m.clone(), &path, body).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{m} {path}: {v}");
        assert_eq!(v["error"]["code"], "not_found");
    }
}

/// 409 at max_per_owner (5): one exists.
async fn owner_limit(a: &Admin<'_>) {
    for _ in 0..4 {
        a.create(json!({"owner_id": "acme"})).await;
    }
    let (s, v) = a.post("/v1/keys", json!({"owner_id": "acme"})).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("conflict"))
    );
}

/// Revoke with a reason; revoked keys cannot be changed.
async fn revoke(a: &Admin<'_>, id: &str) {
    let (s, r) = a
        .post(
            &format!("/v1/keys/{id}/revoke"),
            json!({"reason": "leaked"}),
        )
        .await;
    assert_eq!(
        (s, r["status"].as_str(), r["revoked_reason"].as_str()),
        (StatusCode::OK, Some("revoked"), Some("leaked"))
    );
    let (s, _) = a
        .send(
            reqwest::Method::PATCH,
            &format!("/v1/keys/{id}"),
            Some(json!({"name": "x"})),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
}

/// List filters.
async fn list_filters(a: &Admin<'_>, id: &str) {
    let id = id.to_string();
    let (_, revoked) = a.get("/v1/keys?owner_id=acme&status=revoked").await;
    assert_eq!(revoked["keys"].as_array().map(Vec::len), Some(1));
    let (_, tagged) = a.get("/v1/keys?tag=team-a").await;
    assert_eq!(tagged["keys"][0]["id"], id.as_str());
    let (s, _) = a.get("/v1/keys?status=sideways").await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
}

async fn delete(a: &Admin<'_>, id: &str) {
    let (s, _) = a
        .send(reqwest::Method::DELETE, &format!("/v1/keys/{id}"), None)
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_eq!(
        a.get(&format!("/v1/keys/{id}")).await.0,
        StatusCode::NOT_FOUND
    );
}

async fn key_endpoints_end_to_end(kind: StoreKind) {
    let up = Upstream::start("a").await;
    let (_cfg, gw) = setup(&up, kind).await;
    let a = admin(&gw);
    let id = create_and_read(&a).await;
    partial_updates(&a, &id).await;
    bad_input(&a, &id).await;
    not_found(&a).await;
    owner_limit(&a).await;
    revoke(&a, &id).await;
    list_filters(&a, &id).await;
    delete(&a, &id).await;
    gw.stop().await;
}

both_stores!(key_endpoints_end_to_end,);
