//! Real PostgreSQL for tests: an ephemeral server spawned from the installed
//! binaries (shared by tests, one fresh database each), or dedicated servers
//! for tests that stop and start Postgres. `KEYGATE_TEST_DATABASE_URL` points
//! the shared part at an existing server instead.

use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use sqlx::Connection;

use super::procs::{self, ScratchDir};

const PG_DIRS: &[&str] = &["/usr/lib/postgresql/*/bin"];

fn bin(name: &str) -> PathBuf {
    procs::find(name, PG_DIRS).unwrap_or_else(|| {
        panic!("PostgreSQL server binary `{name}` not found (install Debian's `postgresql` package); the tests need a real Postgres")
    })
}

/// The uid/gid to run postgres as: ourselves, or the `postgres` user when root
/// (postgres refuses to run as root).
fn run_as() -> Option<(u32, u32)> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    let name = CString::new("postgres").expect("cstr");
    // SAFETY: getpwnam returns a pointer to static storage or null.
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    assert!(
        !pw.is_null(),
        "running as root needs a `postgres` system user to run the test database"
    );
    // SAFETY: checked non-null above.
    let pw = unsafe { &*pw };
    Some((pw.pw_uid, pw.pw_gid))
}

fn chown_tree(path: &Path, ids: Option<(u32, u32)>) {
    if let Some((uid, gid)) = ids {
        let status = Command::new("chown")
            .arg("-R")
            .arg(format!("{uid}:{gid}"))
            .arg(path)
            .status()
            .expect("chown");
        assert!(status.success(), "chown {path:?}");
    }
}

fn command(program: &Path, ids: Option<(u32, u32)>) -> Command {
    use std::os::unix::process::CommandExt;
    let mut c = Command::new(program);
    if let Some((uid, gid)) = ids {
        c.uid(uid).gid(gid);
    }
    c
}

/// An initdb'd data directory, made once and copied for each server.
fn template() -> &'static Path {
    static TEMPLATE: OnceLock<ScratchDir> = OnceLock::new();
    TEMPLATE
        .get_or_init(|| {
            let dir = ScratchDir::new("pg-template");
            let ids = run_as();
            chown_tree(dir.path(), ids);
            let data = dir.path().join("data");
            let out = command(&bin("initdb"), ids)
                .args([
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "--no-sync",
                    "-E",
                    "UTF8",
                    "--locale=C",
                    "-D",
                ])
                .arg(&data)
                .output()
                .expect("run initdb");
            assert!(
                out.status.success(),
                "initdb failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            dir
        })
        .path()
}

pub struct PgServer {
    pub port: u16,
    dir: ScratchDir,
    child: Option<Child>,
    settings: Vec<String>,
}

impl PgServer {
    pub fn start() -> PgServer {
        Self::start_with(&[])
    }

    /// A dedicated server with extra `-c name=value` settings.
    pub fn start_with(settings: &[&str]) -> PgServer {
        let dir = ScratchDir::new("pg");
        let status = Command::new("cp")
            .arg("-a")
            .arg(template().join("data"))
            .arg(dir.path())
            .status()
            .expect("cp");
        assert!(status.success(), "copy template data dir");
        chown_tree(dir.path(), run_as());
        let mut s = PgServer {
            port: 0,
            dir,
            child: None,
            settings: settings.iter().map(|s| s.to_string()).collect(),
        };
        s.boot();
        s
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn boot(&mut self) {
        for _ in 0..5 {
            let port = if self.port == 0 {
                procs::free_port()
            } else {
                self.port
            };
            let log =
                std::fs::File::create(self.dir.path().join("postgres.log")).expect("log file");
            let mut cmd = command(&bin("postgres"), run_as());
            cmd.arg("-D")
                .arg(self.data())
                .args(["-p", &port.to_string()])
                .args([
                    "-c",
                    "listen_addresses=127.0.0.1",
                    "-c",
                    "unix_socket_directories=",
                ])
                .args([
                    "-c",
                    "fsync=off",
                    "-c",
                    "synchronous_commit=off",
                    "-c",
                    "full_page_writes=off",
                ])
                .args(["-c", "max_connections=400", "-c", "shared_buffers=16MB"]);
            for setting in &self.settings {
                cmd.args(["-c", setting]);
            }
            cmd.stdout(Stdio::null()).stderr(log);
            let child = procs::spawn(cmd, libc::SIGQUIT).expect("spawn postgres");
            self.child = Some(child);
            if self.wait_ready(port) {
                self.port = port;
                return;
            }
            self.kill();
        }
        let log = std::fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default();
        panic!("postgres did not start:\n{log}");
    }

    fn wait_ready(&mut self, port: u16) -> bool {
        let deadline = Instant::now() + Duration::from_secs(30);
        let url = format!("postgres://postgres@127.0.0.1:{port}/postgres");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("rt");
        while Instant::now() < deadline {
            if let Some(c) = &mut self.child {
                if let Ok(Some(_)) = c.try_wait() {
                    return false;
                }
            }
            // Ready when *our* server answers (not another one on the same port).
            let data = self.data();
            let ours = rt.block_on(async {
                let mut c = sqlx::PgConnection::connect(&url).await.ok()?;
                let dir: String = sqlx::query_scalar("SELECT current_setting('data_directory')")
                    .fetch_one(&mut c)
                    .await
                    .ok()?;
                Some(std::path::Path::new(&dir) == data)
            });
            match ours {
                Some(true) => return true,
                Some(false) => return false,
                None => {}
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            procs::signal(&c, libc::SIGQUIT);
            let _ = c.wait();
        }
    }

    /// Fast shutdown: connections are cut, the server exits.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            procs::signal(&c, libc::SIGINT);
            let _ = c.wait();
        }
    }

    /// Starts again on the same port with the same data.
    pub fn restart(&mut self) {
        self.stop();
        self.boot();
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default()
    }

    pub fn admin_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn shared_admin_url() -> String {
    static SHARED: OnceLock<Result<PgServer, String>> = OnceLock::new();
    if let Ok(url) = std::env::var("KEYGATE_TEST_DATABASE_URL") {
        return url;
    }
    // Started on a plain thread: the server must not belong to one test's runtime.
    let server = SHARED.get_or_init(|| {
        std::thread::spawn(PgServer::start).join().map_err(|_| {
            "the shared test Postgres failed to start (see the panic above)".to_string()
        })
    });
    match server {
        Ok(s) => s.admin_url(),
        Err(e) => panic!("{e}"),
    }
}

/// A fresh, migrated database on the shared server; returns its URL.
pub async fn fresh_db() -> String {
    fresh_db_on(&shared_admin_url()).await
}

/// A fresh, migrated database on a given server.
pub async fn fresh_db_on(admin_url: &str) -> String {
    let name = format!("kg_{}", uuid::Uuid::new_v4().simple());
    let mut conn = sqlx::PgConnection::connect(admin_url)
        .await
        .expect("connect to test postgres");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .expect("create test database");
    let base = admin_url
        .rsplit_once('/')
        .map(|(b, _)| b)
        .unwrap_or(admin_url);
    let url = format!("{base}/{name}");
    let db = keygate::store::postgres::open(keygate::store::postgres::PgSettings::direct(&url, 2))
        .expect("open store");
    keygate::store::sql::Dialect::migrate(&db)
        .await
        .expect("migrate test database");
    url
}

/// The audit sealer the test gateways use (derived from the test hash secret).
pub fn test_sealer() -> keygate::audit::AuditSealer {
    let h = keygate::auth::hash::KeyHasher::new(super::gateway::HASH_SECRET.as_bytes())
        .expect("secret");
    keygate::audit::AuditSealer::new(&h)
}
