//! `keygate owners ...` and `keys credits` through the built binary.

use std::path::{Path, PathBuf};

use crate::harness::binary;
use crate::harness::gateway::HASH_SECRET;
use crate::harness::{StoreKind, both_stores};

const ENV: &[(&str, &str)] = &[("KEYGATE_HASH_SECRET", HASH_SECRET)];

async fn run(config: &Path, args: &[&str]) -> (i32, String, String) {
    let config: PathBuf = config.into();
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        binary::run(&config, &args, ENV)
    })
    .await
    .expect("join")
}

async fn json(config: &Path, args: &[&str]) -> serde_json::Value {
    let (code, out, err) = run(config, args).await;
    assert_eq!(code, 0, "keygate {args:?} failed: {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("keygate {args:?}: not JSON ({e}): {out}"))
}

/// A config file with one route, on a fresh database of `kind`.
async fn config(kind: StoreKind, dir: &Path) -> PathBuf {
    let db = match kind {
        StoreKind::Postgres => crate::harness::pg::fresh_db().await,
        StoreKind::Sqlite => format!("sqlite://{}", dir.join("keygate.db").display()),
    };
    let config = dir.join("keygate.toml");
    binary::write_config(&config, &binary::cli_config(&db));
    config
}

async fn owners_and_credits_through_the_cli(kind: StoreKind) {
    let dir = tempfile::tempdir().expect("tmp");
    let config = config(kind, dir.path()).await;
    let c = config.as_path();
    create_and_top_up(c).await;
    let id = key_credits(c).await;
    update_and_delete(c, &id).await;
}

/// An owner with every option; a top-up.
async fn create_and_top_up(c: &Path) {
    let o = json(
        c,
        &[
            "owners",
            "create",
            "acme",
            "--name",
            "Acme",
            "--limit",
            "minute=5",
            "--route-limit",
            "orders:second=2",
            "--credits",
            "10",
            "--refill",
            "100/month@15",
            "--json",
        ],
    )
    .await;
    assert_eq!(
        (
            o["rate_limits"]["minute"].as_u64(),
            o["route_limits"]["orders"]["second"].as_u64()
        ),
        (Some(5), Some(2))
    );
    assert_eq!(o["credits"]["refill"]["day_of_month"], 15);
    let o = json(c, &["owners", "credits", "acme", "--add", "5", "--json"]).await;
    assert_eq!(o["credits"]["remaining"], 15);
}

/// A key with its own credits, then set.
async fn key_credits(c: &Path) -> String {
    let k = json(
        c,
        &[
            "keys",
            "create",
            "--owner",
            "acme",
            "--name",
            "k",
            "--credits",
            "3",
            "--json",
        ],
    )
    .await;
    let id = k["key"]["id"].as_str().expect("id").to_string();
    assert_eq!(k["key"]["credits"]["remaining"], 3);
    let k = json(c, &["keys", "credits", &id, "--set", "7", "--json"]).await;
    assert_eq!(k["credits"]["remaining"], 7);
    id
}

/// Shown, disabled with its credits cleared, deleted once it has no keys.
async fn update_and_delete(c: &Path, id: &str) {
    let (code, out, _) = run(c, &["owners", "show", "acme"]).await;
    assert!(
        code == 0 && out.contains("15 left, refill 100/month@15"),
        "{out}"
    );
    let o = json(
        c,
        &[
            "owners",
            "update",
            "acme",
            "--disable",
            "--clear",
            "credits",
            "--json",
        ],
    )
    .await;
    assert_eq!(
        (o["enabled"].as_bool(), o.get("credits")),
        (Some(false), None)
    );
    let (code, _, err) = run(c, &["owners", "delete", "acme"]).await;
    assert!(code == 1 && err.contains("still has 1 key"), "{err}");
    let (code, _, err) = run(c, &["owners", "credits", "acme", "--add", "0"]).await;
    assert!(code == 2 && err.contains("add"), "{err}");
    assert_eq!(run(c, &["keys", "delete", id]).await.0, 0);
    assert_eq!(
        json(c, &["owners", "delete", "acme", "--json"]).await["deleted"],
        "acme"
    );
    let (code, out, err) = run(c, &["audit", "verify"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("audit chain OK"), "{out}");
}

both_stores!(owners_and_credits_through_the_cli);
