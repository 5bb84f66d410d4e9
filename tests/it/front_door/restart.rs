//! A restart without loss: the built binary serves continuous load; `keygate
//! serve --upgrade` starts a second process that takes the listening sockets
//! (plain, TLS and admin) from the first, which drains and exits. No request
//! fails, every response has a usage row, the pid file names the new process.

use std::path::{Path, PathBuf};
use std::time::Duration;

use http::Version;

use super::{Certs, Load, TlsClient, tls_section};
use crate::harness::Upstream;
use crate::harness::binary::{self, Process};
use crate::harness::gateway::HASH_SECRET;
use crate::harness::procs::free_port;

const ENV: &[(&str, &str)] = &[("KEYGATE_HASH_SECRET", HASH_SECRET)];

async fn load_rows(db: &str) -> i64 {
    let pool = sqlx::PgPool::connect(db).await.expect("postgres");
    sqlx::query_scalar("SELECT count(*) FROM usage_events WHERE request_id LIKE 'load-%'")
        .fetch_one(&pool)
        .await
        .expect("count")
}

/// Waits for `p` to exit successfully; returns it.
async fn exits(mut p: Process, within: Duration) -> Process {
    tokio::task::spawn_blocking(move || {
        let (status, _) = p.wait(within).expect("exited in time");
        assert!(status.success(), "{status:?}: {:#?}", p.logs());
        p
    })
    .await
    .expect("join")
}

/// A serving config on `db` with a TLS listener on a fixed port, a pid file
/// and an upgrade socket in `dir`; returns the config file, the pid file and
/// the TLS port.
fn upgrade_config(dir: &Path, db: &str, up: &Upstream, certs: &Certs) -> (PathBuf, PathBuf, u16) {
    let pid_file = dir.join("run/keygate.pid");
    let mut file = binary::serving_config(db, up.addr);
    file.gateway.pid_file = Some(pid_file.display().to_string());
    let socket = dir.join("upgrade/keygate.sock");
    file.gateway.upgrade_socket = Some(socket.display().to_string());
    file.gateway.shutdown_grace = Some("5s".into());
    file.usage.flush_interval = Some("100ms".into());
    let tls_port = free_port();
    let mut tls = tls_section(&certs.pairs());
    tls.listen = Some(format!("127.0.0.1:{tls_port}"));
    file.gateway.tls = Some(tls);
    let config = dir.join("keygate.toml");
    binary::write_config(&config, &file);
    (config, pid_file, tls_port)
}

#[tokio::test]
async fn serve_upgrade_under_load_drops_no_request_and_loses_no_usage_row() {
    let certs = Certs::new();
    let up = Upstream::start("a").await;
    let db = crate::harness::pg::fresh_db().await;
    let dir = tempfile::tempdir().expect("tmp");
    let (config, pid_file, tls_port) = upgrade_config(dir.path(), &db, &up, &certs);

    let old = Process::serve(dir.path(), &config, ENV);
    let pid = |p: &Process| p.child.id().to_string();
    assert_eq!(
        std::fs::read_to_string(&pid_file).expect("pid file").trim(),
        pid(&old)
    );
    let load = Load::start(format!("http://{}/x", old.proxy), None, 4);
    tokio::time::sleep(Duration::from_millis(500)).await;

    let (d, c) = (dir.path().to_owned(), config.clone());
    let new = tokio::task::spawn_blocking(move || Process::serve_with(&d, &c, &["--upgrade"], ENV))
        .await
        .expect("join");
    assert_eq!(
        (new.proxy, new.admin),
        (old.proxy, old.admin),
        "the same sockets"
    );
    let old = exits(old, Duration::from_secs(15)).await;
    assert!(
        old.logs()
            .iter()
            .any(|l| l.contains("handed the listening sockets"))
    );
    assert!(
        new.logs()
            .iter()
            .any(|l| l.contains("took over the listening sockets"))
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let tally = load.finish().await;
    tally.assert_all_ok("serve --upgrade under load");
    assert!(
        tally.responses() > 100,
        "the load ran: {:?}",
        tally.statuses
    );
    assert_eq!(
        std::fs::read_to_string(&pid_file).expect("pid file").trim(),
        pid(&new)
    );
    let h2 = TlsClient::new(&certs.ca, Version::HTTP_2);
    let r = h2
        .get(&format!("https://localhost:{tls_port}/x"), &[])
        .await;
    assert_eq!(
        (r.status, r.version),
        (200, Version::HTTP_2),
        "the TLS socket was handed over"
    );

    new.signal(libc::SIGTERM);
    drop(exits(new, Duration::from_secs(15)).await);
    assert!(!pid_file.exists(), "the pid file is removed at exit");
    let n = tally.responses() as i64;
    let _ = crate::harness::eventually(Duration::from_secs(15), || async {
        load_rows(&db).await >= n
    })
    .await;
    assert_eq!(load_rows(&db).await, n, "a usage row for every response");
}

#[tokio::test]
async fn upgrade_without_a_running_gateway_fails_and_says_why() {
    let up = Upstream::start("a").await;
    let dir = tempfile::tempdir().expect("tmp");
    let db = format!("sqlite://{}", dir.path().join("keygate.db").display());
    let mut file = binary::serving_config(&db, up.addr);
    file.gateway.pid_file = Some(dir.path().join("keygate.pid").display().to_string());
    let config = dir.path().join("keygate.toml");
    binary::write_config(&config, &file);
    let (code, _, err) = binary::run(&config, &["serve", "--upgrade"], ENV);
    assert_ne!(code, 0);
    assert!(err.contains("keygate.pid"), "{err}");
    let (code, _, err) = binary::run(&config, &["reload"], ENV);
    assert_ne!(code, 0);
    assert!(err.contains("keygate.pid"), "{err}");
}
