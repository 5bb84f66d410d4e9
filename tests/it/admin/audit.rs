//! Usage and audit endpoints, the audit chain under tampering, and
//! schemathesis against the live admin API.

use super::*;

async fn usage_and_audit_endpoints(kind: StoreKind) {
    let up = Upstream::start("a").await;
    let (_cfg, gw) = setup(&up, kind).await;
    let a = admin(&gw);
    let created = a
        .create(json!({"owner_id": "u", "scopes": ["orders:read"]}))
        .await;
    let id = created["key"]["id"].as_str().expect("id");
    let secret = created["secret"].as_str().expect("secret");
    let _ = eventually(Duration::from_secs(3), || async {
        gw.get("/orders")
            .header("x-api-key", secret)
            .send()
            .await
            .expect("send")
            .status()
            == 200
    })
    .await;
    for path in ["/orders/1", "/orders/2", "/other/3"] {
        gw.get(path)
            .header("x-api-key", secret)
            .send()
            .await
            .expect("send");
    }
    let report = eventually(Duration::from_secs(5), || async {
        let (_, v) = a.get(&format!("/v1/keys/{id}/usage?granularity=day")).await;
        v["buckets"].as_array().map(|b| {
            b.iter()
                .map(|x| x["requests"].as_i64().unwrap_or(0))
                .sum::<i64>()
        }) == Some(4)
    })
    .await;
    assert!(
        report.is_some(),
        "usage buckets add up to the requests made"
    );
    let (_, v) = a.get(&format!("/v1/keys/{id}/usage")).await;
    let outcomes: HashSet<&str> = v["buckets"]
        .as_array()
        .expect("buckets")
        .iter()
        .filter_map(|b| b["outcome"].as_str())
        .collect();
    assert_eq!(outcomes, HashSet::from(["ok"]));
    let (s, _) = a
        .get(&format!("/v1/keys/{id}/usage?granularity=week"))
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);

    a.send(
        reqwest::Method::PATCH,
        &format!("/v1/keys/{id}"),
        Some(json!({"name": "n2"})),
    )
    .await;
    let (s, page) = a.get("/v1/audit?limit=1").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(page["entries"][0]["seq"], 1);
    assert_eq!(page["next_after"], 1);
    // seq 1: the owner, created by its first key; 2: the key.
    assert_eq!(page["entries"][0]["action"], "owner.create");
    let (_, rest) = a.get("/v1/audit?after=2").await;
    let e = &rest["entries"][0];
    assert_eq!(
        (e["action"].as_str(), e["key_id"].as_str()),
        (Some("key.update"), Some(id))
    );
    assert!(e["actor"].as_str().expect("actor").starts_with("admin:"));
    assert!(
        !e["actor"].as_str().expect("actor").contains(TOKEN),
        "the token never appears"
    );
    assert!(e["changes"].as_str().expect("changes").contains("n2"));
    assert!(
        !page.to_string().contains(secret),
        "no secrets in the audit log"
    );
    gw.stop().await;
}

async fn audit_verify_names_the_first_tampered_record(kind: StoreKind) {
    let up = Upstream::start("a").await;
    let (cfg, gw) = setup(&up, kind).await;
    let a = admin(&gw);
    let created = a.create(json!({"owner_id": "t"})).await;
    let id = created["key"]["id"].as_str().expect("id").to_string();
    for name in ["a", "b", "c"] {
        a.send(
            reqwest::Method::PATCH,
            &format!("/v1/keys/{id}"),
            Some(json!({"name": name})),
        )
        .await;
    }
    a.post(&format!("/v1/keys/{id}/revoke"), json!({"reason": "done"}))
        .await;
    gw.stop().await;
    let dir = tempfile::tempdir().expect("tmp");
    let config = dir.path().join("k.toml");
    binary::write_config(&config, &binary::store_config(cfg.db_url()));
    let verify = || {
        let config = config.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                binary::run(
                    &config,
                    &["audit", "verify"],
                    &[("KEYGATE_HASH_SECRET", HASH_SECRET)],
                )
            })
            .await
            .expect("join")
        }
    };
    let (code, out, err) = verify().await;
    assert_eq!(code, 0, "{out}{err}");
    // The owner (created by the key), the key, three updates, the revocation.
    assert!(out.contains("6 record(s)"), "{out}");

    let exec = |sql: &'static str| {
        let cfg = cfg.clone();
        async move { cfg.exec(sql).await }
    };
    // An untouched copy, to restore from.
    exec("CREATE TABLE audit_copy AS SELECT * FROM audit_log").await;
    // Edit a record's content.
    exec("UPDATE audit_log SET changes = '{\"name\":\"forged\"}' WHERE seq = 3").await;
    let (code, _, err) = verify().await;
    assert_eq!(code, 1);
    assert!(err.contains("sequence 3"), "{err}");
    // Restore it (the chain verifies again), then delete one.
    exec("UPDATE audit_log SET changes = (SELECT changes FROM audit_copy WHERE seq = 3) WHERE seq = 3")
        .await;
    let (code, out, err) = verify().await;
    assert_eq!(code, 0, "restored chain: {out}{err}");
    exec("DELETE FROM audit_log WHERE seq = 3").await;
    let (code, _, err) = verify().await;
    assert_eq!(code, 1);
    assert!(err.contains("sequence 3"), "{err}");
    // Reorder: swap two records' positions.
    exec("DELETE FROM audit_log").await;
    exec("INSERT INTO audit_log SELECT * FROM audit_copy").await;
    exec("UPDATE audit_log SET seq = -2 WHERE seq = 2").await;
    exec("UPDATE audit_log SET seq = 2 WHERE seq = 4").await;
    exec("UPDATE audit_log SET seq = 4 WHERE seq = -2").await;
    let (code, _, err) = verify().await;
    assert_eq!(code, 1);
    assert!(err.contains("sequence 2"), "{err}");
}

async fn schemathesis_finds_no_server_errors_or_schema_violations(kind: StoreKind) {
    let up = Upstream::start("a").await;
    let (_cfg, gw) = setup(&up, kind).await;
    let st = crate::harness::procs::find("schemathesis", &[])
        .expect("schemathesis not found: `pip install schemathesis` (see README: Testing)");
    let url = gw.admin_url("/openapi.json");
    let out = tokio::task::spawn_blocking(move || {
        // Its cache goes to the working directory: keep it out of the repository.
        let scratch = tempfile::tempdir().expect("tmp");
        std::process::Command::new(st)
            .current_dir(scratch.path())
            .args(["run", &url, "-H", &format!("Authorization: Bearer {TOKEN}")])
            // positive_data_acceptance is left out on purpose: keygate's validation
            // is stricter than JSON Schema can say (see README: Admin API).
            .args([
                "--checks",
                "all",
                "--exclude-checks",
                "positive_data_acceptance",
            ])
            .args(["--max-examples", "25", "--seed", "20261122", "--no-color"])
            .output()
            .expect("run schemathesis")
    })
    .await
    .expect("join");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "schemathesis failed:\n{text}");
    gw.stop().await;
}

both_stores!(
    usage_and_audit_endpoints,
    audit_verify_names_the_first_tampered_record,
    schemathesis_finds_no_server_errors_or_schema_violations,
);
