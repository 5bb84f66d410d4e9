//! Real PgBouncer (Debian's `pgbouncer`) in transaction pooling mode in front
//! of a given Postgres, on a free port, run as `postgres` when we are root.

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use super::procs::{self, ScratchDir};
use super::users;

const DIRS: &[&str] = &["/usr/sbin", "/usr/local/sbin", "/usr/bin"];

fn binary() -> PathBuf {
    procs::find("pgbouncer", &[])
        .or_else(|| {
            DIRS.iter()
                .map(|d| PathBuf::from(d).join("pgbouncer"))
                .find(|p| p.is_file())
        })
        .unwrap_or_else(|| {
            panic!("`pgbouncer` not found (install Debian's `pgbouncer` package); the tests need a real PgBouncer")
        })
}

/// Pool settings; `Default` is transaction pooling, 200 clients, 10 per pool.
#[derive(Clone, Debug)]
pub struct PgBouncerConfig {
    pub pool_mode: &'static str,
    pub max_client_conn: u32,
    pub default_pool_size: u32,
}

impl Default for PgBouncerConfig {
    fn default() -> Self {
        PgBouncerConfig {
            pool_mode: "transaction",
            max_client_conn: 200,
            default_pool_size: 10,
        }
    }
}

pub struct PgBouncer {
    pub port: u16,
    child: Option<Child>,
    dir: ScratchDir,
}

impl PgBouncer {
    /// Transaction pooling in front of the Postgres at `host:port` (trusting
    /// user `postgres`); every database name is passed through.
    pub fn start(pg_host: &str, pg_port: u16) -> PgBouncer {
        Self::start_with(pg_host, pg_port, PgBouncerConfig::default())
    }

    pub fn start_with(pg_host: &str, pg_port: u16, config: PgBouncerConfig) -> PgBouncer {
        let bin = binary();
        let dir = ScratchDir::new("pgbouncer");
        let ids = users::postgres_ids();
        users::chown(dir.path(), ids);
        let log = dir.path().join("pgbouncer.log");
        for _ in 0..5 {
            let port = procs::free_port();
            let ini = write_config(&dir, pg_host, pg_port, port, &config, ids);
            let _ = std::fs::remove_file(&log);
            let mut cmd = users::command_as(&bin, ids);
            cmd.arg(&ini)
                .current_dir(dir.path())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            let mut child = procs::spawn(cmd, libc::SIGTERM).expect("spawn pgbouncer");
            if wait_ready(&mut child, port, &log) {
                return PgBouncer {
                    port,
                    child: Some(child),
                    dir,
                };
            }
            procs::signal(&child, libc::SIGKILL);
            let _ = child.wait();
        }
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        panic!("pgbouncer did not start:\n{text}");
    }

    /// `postgres://postgres@127.0.0.1:{port}/{db}` through the pooler.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// The admin console (`SHOW POOLS`, `SHOW CONFIG`, ...); use simple queries.
    pub fn admin_url(&self) -> String {
        self.url("pgbouncer")
    }

    /// PgBouncer's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("pgbouncer.log")).unwrap_or_default()
    }

    /// Immediate shutdown (SIGTERM): client connections are closed.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            procs::signal(&c, libc::SIGTERM);
            let _ = c.wait();
        }
    }

    /// SIGKILL.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            procs::signal(&c, libc::SIGKILL);
            let _ = c.wait();
        }
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn write_config(
    dir: &ScratchDir,
    pg_host: &str,
    pg_port: u16,
    port: u16,
    config: &PgBouncerConfig,
    ids: Option<(u32, u32)>,
) -> PathBuf {
    let d = dir.path();
    let auth = d.join("userlist.txt");
    std::fs::write(&auth, "\"postgres\" \"\"\n").expect("write auth_file");
    users::chown(&auth, ids);
    let ini = d.join("pgbouncer.ini");
    let text = format!(
        "[databases]\n\
         * = host={pg_host} port={pg_port}\n\
         \n\
         [pgbouncer]\n\
         listen_addr = 127.0.0.1\n\
         listen_port = {port}\n\
         unix_socket_dir =\n\
         auth_type = trust\n\
         auth_file = {auth}\n\
         admin_users = postgres\n\
         pool_mode = {mode}\n\
         ignore_startup_parameters = extra_float_digits\n\
         max_client_conn = {max}\n\
         default_pool_size = {pool}\n\
         logfile = {log}\n\
         pidfile = {pid}\n",
        auth = auth.display(),
        mode = config.pool_mode,
        max = config.max_client_conn,
        pool = config.default_pool_size,
        log = d.join("pgbouncer.log").display(),
        pid = d.join("pgbouncer.pid").display(),
    );
    std::fs::write(&ini, text).expect("write pgbouncer.ini");
    users::chown(&ini, ids);
    ini
}

/// Ready when our child logs that it listens on `port` and the port answers.
fn wait_ready(child: &mut Child, port: u16, log: &Path) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    let listening = format!("listening on 127.0.0.1:{port}");
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return false;
        }
        let logged = std::fs::read_to_string(log)
            .map(|t| t.contains(&listening))
            .unwrap_or(false);
        let addr = ([127, 0, 0, 1], port).into();
        if logged && std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
        {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}
