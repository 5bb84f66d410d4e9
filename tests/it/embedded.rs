//! Embedded mode: the shipped `config/keygate.toml`, nothing installed, from
//! an empty directory.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::harness::binary::{self, Process};
use crate::harness::procs::free_port;
use crate::harness::{Upstream, eventually};

/// The shipped config with only its three addresses moved to free ports.
fn shipped_config(dir: &Path, upstream: std::net::SocketAddr) {
    let shipped =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("config/keygate.toml"))
            .expect("shipped config");
    let mut text = shipped.clone();
    for (from, to) in [
        ("127.0.0.1:8080", format!("127.0.0.1:{}", free_port())),
        ("127.0.0.1:8081", format!("127.0.0.1:{}", free_port())),
        ("127.0.0.1:9000", upstream.to_string()),
    ] {
        assert_eq!(
            text.matches(from).count(),
            1,
            "the shipped config has {from} once"
        );
        text = text.replace(from, &to);
    }
    assert!(
        text.contains("sqlite://") && text.contains("backend = \"memory\""),
        "the shipped config is the embedded one"
    );
    std::fs::create_dir_all(dir.join("config")).expect("config dir");
    std::fs::write(dir.join("config/keygate.toml"), text).expect("write config");
}

/// The first start creates the database and a private hash secret, and says so.
fn first_start(dir: &tempfile::TempDir, config: &Path) -> (Process, PathBuf) {
    let p = Process::serve(dir.path(), config, &[]);
    let secret_file = dir.path().join("data/hash.secret");
    assert!(
        dir.path().join("data/keygate.db").exists(),
        "the database was created"
    );
    let mode = std::fs::metadata(&secret_file)
        .expect("hash secret created")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    assert!(
        p.logs()
            .iter()
            .any(|l| l.contains("created a new hash secret")),
        "said so in the log"
    );
    (p, secret_file)
}

/// A key created by the CLI while the gateway runs is accepted within ~1 s;
/// returns its secret.
async fn a_cli_key_is_accepted(
    dir: &tempfile::TempDir,
    p: &Process,
    client: &reqwest::Client,
) -> String {
    let d = dir.path().to_owned();
    let (code, out, err) = tokio::task::spawn_blocking(move || {
        binary::run_in(
            &d,
            &[
                "keys", "create", "--owner", "me", "--name", "first", "--json",
            ],
            &[],
        )
    })
    .await
    .expect("join");
    assert_eq!(code, 0, "{err}");
    let created = Instant::now();
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    let key = v["secret"].as_str().expect("secret").to_string();
    let url = format!("http://{}/anything", p.proxy);
    let call = || async {
        client
            .get(&url)
            .header("x-api-key", &key)
            .send()
            .await
            .expect("send")
            .status()
            .as_u16()
    };
    let took = eventually(Duration::from_secs(5), || async { call().await == 200 })
        .await
        .expect("the key was accepted");
    assert!(
        created.elapsed() < Duration::from_millis(1500),
        "accepted after {took:?}"
    );
    assert_eq!(
        client
            .get(format!("http://{}/health", p.proxy))
            .send()
            .await
            .expect("send")
            .status(),
        200,
        "public route"
    );
    assert_eq!(
        client.get(&url).send().await.expect("send").status(),
        401,
        "required route without a key"
    );
    key
}

/// A restart keeps the key valid: the same secret file, nothing re-created.
async fn a_restart_keeps_the_key(
    p: Process,
    dir: &tempfile::TempDir,
    config: &Path,
    secret_file: PathBuf,
    client: &reqwest::Client,
    key: String,
) {
    let p = p.terminate(Duration::from_secs(10)).await;
    drop(p);
    let before = std::fs::read(&secret_file).expect("secret");
    let p2 = Process::serve(dir.path(), config, &[]);
    assert_eq!(std::fs::read(&secret_file).expect("secret"), before);
    assert!(
        !p2.logs()
            .iter()
            .any(|l| l.contains("created a new hash secret"))
    );
    let url2 = format!("http://{}/anything", p2.proxy);
    let status = client
        .get(&url2)
        .header("x-api-key", &key)
        .send()
        .await
        .expect("send")
        .status();
    assert_eq!(status, 200, "the key is still valid after a restart");
}

#[tokio::test]
async fn the_shipped_config_runs_from_an_empty_directory() {
    let up = Upstream::start("api").await;
    let dir = tempfile::tempdir().expect("tmp");
    shipped_config(dir.path(), up.addr);
    let config = Path::new("config/keygate.toml");
    let (p, secret_file) = first_start(&dir, config);
    let client = reqwest::Client::new();
    let key = a_cli_key_is_accepted(&dir, &p, &client).await;
    a_restart_keeps_the_key(p, &dir, config, secret_file, &client, key).await;
}
