//! The `keygate` CLI against a real database: migrate, every `keys` command,
//! `--json` output, exit codes.

use crate::harness::{StoreKind, both_stores};
use std::path::{Path, PathBuf};

use crate::harness::binary;
use crate::harness::gateway::HASH_SECRET;
use crate::harness::pg::fresh_db;

const ENV: &[(&str, &str)] = &[("KEYGATE_HASH_SECRET", HASH_SECRET)];

struct Cli {
    _dir: tempfile::TempDir,
    config: PathBuf,
}

impl Cli {
    async fn new(kind: StoreKind) -> Cli {
        let dir = tempfile::tempdir().expect("tmp");
        let db = match kind {
            StoreKind::Postgres => fresh_db().await,
            StoreKind::Sqlite => format!("sqlite://{}", dir.path().join("keygate.db").display()),
        };
        let config = dir.path().join("keygate.toml");
        let mut file = binary::cli_config(&db);
        file.keys.max_per_owner = Some(3);
        binary::write_config(&config, &file);
        Cli { _dir: dir, config }
    }

    async fn run(&self, args: &[&str]) -> (i32, String, String) {
        let config = self.config.clone();
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            binary::run(Path::new(&config), &args, ENV)
        })
        .await
        .expect("join")
    }

    async fn json(&self, args: &[&str]) -> serde_json::Value {
        let (code, out, err) = self.run(args).await;
        assert_eq!(code, 0, "keygate {args:?} failed: {err}");
        serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("keygate {args:?}: not JSON ({e}): {out}"))
    }
}

async fn migrate_is_idempotent(kind: StoreKind) {
    let cli = Cli::new(kind).await;
    for _ in 0..2 {
        let (code, out, err) = cli.run(&["migrate"]).await;
        assert_eq!(code, 0, "{err}");
        assert!(out.contains("migrations applied"), "{out}");
    }
}

/// Creates the key with every option; returns its id and secret.
async fn create(cli: &Cli) -> (String, String) {
    let created = cli
        .json(&[
            "keys",
            "create",
            "--owner",
            "acme",
            "--name",
            "ci key",
            "--scope",
            "orders:read",
            "--scope",
            "orders:*",
            "--cidr",
            "10.0.0.0/8",
            "--cidr",
            "2001:db8::/32",
            "--limit",
            "minute=100",
            "--limit",
            "day=5000",
            "--route",
            "orders",
            "--expires-in",
            "30d",
            "--prefix",
            "acme_live",
            "--meta",
            "plan=gold",
            "--tag",
            "ci",
            "--json",
        ])
        .await;
    let secret = created["secret"].as_str().expect("secret");
    assert!(secret.starts_with("acme_live_"));
    assert!(keygate::auth::key::parse(secret).is_ok());
    let key = &created["key"];
    let id = key["id"].as_str().expect("id").to_string();
    assert_eq!(key["owner_id"], "acme");
    assert_eq!(key["status"], "active");
    assert_eq!(key["hint"], &secret[secret.len() - 4..]);
    assert_eq!(
        key["rate_limits"],
        serde_json::json!({"minute": 100, "day": 5000})
    );
    assert_eq!(
        key["allowed_cidrs"],
        serde_json::json!(["10.0.0.0/8", "2001:db8::/32"])
    );
    assert_eq!(key["metadata"]["plan"], "gold");
    assert!(
        !key.to_string().contains(secret),
        "the key object never carries the secret"
    );
    (id, secret.to_string())
}

async fn show(cli: &Cli, id: &str, secret: &str) {
    let id = id.to_string();
    let shown = cli.json(&["keys", "show", &id, "--json"]).await;
    assert_eq!(shown["id"], id.as_str());
    assert!(!shown.to_string().contains(secret));
    let (code, human, _) = cli.run(&["keys", "show", &id]).await;
    assert_eq!(code, 0);
    assert!(
        human.contains("acme_live_…") && human.contains("orders:read"),
        "{human}"
    );
}

/// Only the given fields change.
async fn update(cli: &Cli, id: &str) {
    let updated = cli
        .json(&[
            "keys",
            "update",
            id,
            "--scope",
            "users:read",
            "--disable",
            "--clear",
            "cidrs",
            "--json",
        ])
        .await;
    assert_eq!(updated["scopes"], serde_json::json!(["users:read"]));
    assert_eq!(updated["allowed_cidrs"], serde_json::json!([]));
    assert_eq!(updated["status"], "disabled");
    assert_eq!(
        updated["rate_limits"]["minute"], 100,
        "untouched fields stay"
    );
}

async fn list_by_status(cli: &Cli) {
    let listed = cli
        .json(&[
            "keys", "list", "--owner", "acme", "--status", "disabled", "--json",
        ])
        .await;
    assert_eq!(listed["keys"].as_array().map(Vec::len), Some(1));
    let none = cli
        .json(&[
            "keys", "list", "--owner", "acme", "--status", "active", "--json",
        ])
        .await;
    assert_eq!(none["keys"].as_array().map(Vec::len), Some(0));
}

async fn rotate(cli: &Cli, id: &str, secret: &str) {
    let rotated = cli
        .json(&["keys", "rotate", id, "--grace", "1h", "--json"])
        .await;
    let new_secret = rotated["secret"].as_str().expect("secret");
    assert_ne!(new_secret, secret);
    assert_eq!(rotated["previous"]["rotated_to"], rotated["key"]["id"]);
    assert!(rotated["previous"]["expires_at"].is_string());
}

/// Revoked with a reason; the list still holds both keys of the rotation.
async fn revoke(cli: &Cli, id: &str) {
    let revoked = cli
        .json(&["keys", "revoke", id, "--reason", "rotated away", "--json"])
        .await;
    assert_eq!(revoked["status"], "revoked");
    assert_eq!(revoked["revoked_reason"], "rotated away");

    let (code, out, _) = cli.run(&["keys", "list"]).await;
    assert_eq!(code, 0);
    assert!(out.contains("2 key(s)"), "{out}");
}

/// A deleted key is gone; the audit chain holds every change.
async fn delete_then_verify_the_audit(cli: &Cli, id: &str) {
    let id = id.to_string();
    let deleted = cli.json(&["keys", "delete", &id, "--json"]).await;
    assert_eq!(deleted["deleted"], id.as_str());
    let (code, _, err) = cli.run(&["keys", "show", &id]).await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("not found"), "{err}");

    let (code, out, err) = cli.run(&["audit", "verify"]).await;
    assert_eq!(code, 0, "{err}");
    // Six key changes and the owner the first key created.
    assert!(out.contains("audit chain OK: 7 record(s)"), "{out}");
}

async fn key_lifecycle_through_the_cli(kind: StoreKind) {
    let cli = Cli::new(kind).await;
    let (id, secret) = create(&cli).await;
    show(&cli, &id, &secret).await;
    update(&cli, &id).await;
    list_by_status(&cli).await;
    rotate(&cli, &id, &secret).await;
    revoke(&cli, &id).await;
    delete_then_verify_the_audit(&cli, &id).await;
}

async fn bad_input_exits_2_with_a_clear_message(kind: StoreKind) {
    let cli = Cli::new(kind).await;
    for (args, want) in [
        (vec!["keys", "show", "not-a-uuid"], "not a key id"),
        (
            vec![
                "keys", "create", "--owner", "o", "--name", "n", "--limit", "week=5",
            ],
            "window must be",
        ),
        (
            vec![
                "keys",
                "create",
                "--owner",
                "o",
                "--name",
                "n",
                "--cidr",
                "10.0.0.1/8",
            ],
            "allowed_cidrs[0]",
        ),
        (
            vec![
                "keys", "create", "--owner", "o", "--name", "n", "--scope", "Orders",
            ],
            "scopes[0]",
        ),
        (
            vec![
                "keys", "create", "--owner", "o", "--name", "n", "--route", "nope",
            ],
            "allowed_routes[0]",
        ),
        (
            vec![
                "keys", "create", "--owner", "o", "--name", "n", "--prefix", "Bad",
            ],
            "prefix",
        ),
        (
            vec!["keys", "create", "--owner", "", "--name", "n"],
            "owner_id",
        ),
        (vec!["keys", "create", "--name", "n"], "--owner"),
    ] {
        let (code, _, err) = cli.run(&args).await;
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
    }
    for _ in 0..3 {
        cli.json(&[
            "keys", "create", "--owner", "capped", "--name", "n", "--json",
        ])
        .await;
    }
    let (code, _, err) = cli
        .run(&["keys", "create", "--owner", "capped", "--name", "n"])
        .await;
    assert_eq!(code, 1);
    assert!(err.contains("max_per_owner"), "{err}");
}

#[tokio::test]
async fn missing_hash_secret_is_a_clear_error() {
    let cli = Cli::new(StoreKind::Postgres).await;
    let config = cli.config.clone();
    let (code, _, err) =
        tokio::task::spawn_blocking(move || binary::run(&config, &["keys", "list"], &[]))
            .await
            .expect("join");
    assert_eq!(code, 1);
    assert!(err.contains("no hash secret"), "{err}");
}

#[tokio::test]
async fn serve_without_a_hash_secret_refuses_to_start() {
    let cli = Cli::new(StoreKind::Postgres).await;
    let config = cli.config.clone();
    let (code, _, err) = tokio::task::spawn_blocking(move || binary::run(&config, &["serve"], &[]))
        .await
        .expect("join");
    assert_eq!(code, 1);
    assert!(
        err.contains("no hash secret") && err.contains("KEYGATE_HASH_SECRET"),
        "{err}"
    );
    let (code, _, err) = tokio::task::spawn_blocking({
        let config = cli.config.clone();
        move || binary::run(&config, &["serve"], &[("KEYGATE_HASH_SECRET", "short")])
    })
    .await
    .expect("join");
    assert_eq!(code, 1);
    assert!(err.contains("at least 32 bytes"), "{err}");
}

async fn usage_prune_deletes_old_raw_records(kind: StoreKind) {
    let cli = Cli::new(kind).await;
    let text = std::fs::read_to_string(&cli.config).expect("config");
    let config = keygate::config::Config::from_toml(&text, &cli.config, &|k| {
        (k == "KEYGATE_HASH_SECRET").then(|| HASH_SECRET.to_string())
    })
    .expect("config");
    let store = keygate::store::open(&config.store)
        .await
        .expect("store")
        .usage;
    let record = |request_id: &str, age_days: i64| keygate::usage::UsageRecord {
        id: uuid::Uuid::now_v7(),
        request_id: request_id.into(),
        ts_ms: (chrono::Utc::now() - chrono::Duration::days(age_days)).timestamp_millis(),
        key_id: None,
        owner_id: None,
        route: None,
        method: "GET".into(),
        status: 200,
        outcome: keygate::outcome::Outcome::Ok,
        latency_us: 1,
        upstream_latency_us: None,
        bytes_in: 0,
        bytes_out: 0,
        client_ip: None,
        deprecated_key: false,
        credits: 0,
        charged_to: None,
    };
    store
        .write_usage(&[record("old", 100), record("new", 0)])
        .await
        .expect("write");
    let (code, out, err) = cli.run(&["usage", "prune", "--older-than", "30d"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("deleted 1 usage record"), "{out}");
    let (code, out, err) = cli.run(&["usage", "export"]).await;
    assert_eq!(code, 0, "{err}");
    let left: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0]["request_id"], "new");
    let (code, _, err) = cli.run(&["usage", "prune", "--older-than", "soon"]).await;
    assert_eq!(code, 2, "{err}");
}

both_stores!(
    migrate_is_idempotent,
    key_lifecycle_through_the_cli,
    bad_input_exits_2_with_a_clear_message,
    usage_prune_deletes_old_raw_records,
);
