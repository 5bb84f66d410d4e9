//! The built `keygate` binary as a child process, for signals and the CLI.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use keygate::config::FileConfig;
use keygate::config::file::{RouteSection, UpstreamSection};

/// Writes `file` as TOML, for the binary to read.
pub fn write_config(path: &Path, file: &FileConfig) {
    let text = toml::to_string(file).expect("config as TOML");
    std::fs::write(path, text).expect("write config");
}

/// A file with only `[store] url`.
pub fn store_config(db_url: &str) -> FileConfig {
    let mut file = FileConfig::default();
    file.store.url = Some(db_url.into());
    file
}

/// For CLI tests: `db_url` and a route `orders` (to upstream `u` at a port
/// nothing listens on), so keys can name a route.
pub fn cli_config(db_url: &str) -> FileConfig {
    let mut file = store_config(db_url);
    file.upstream.push(UpstreamSection {
        name: "u".into(),
        servers: vec!["127.0.0.1:9".into()],
        ..Default::default()
    });
    file.route.push(keygate::config::file::RouteSection {
        name: "orders".into(),
        upstream: "u".into(),
        ..Default::default()
    });
    file
}

/// A gateway (and admin API) on free ports, on `db_url`, with one public
/// catch-all route `r` to `upstream` `u`.
pub fn serving_config(db_url: &str, upstream: SocketAddr) -> FileConfig {
    let mut file = store_config(db_url);
    file.gateway.listen = Some("127.0.0.1:0".into());
    file.admin.listen = Some("127.0.0.1:0".into());
    file.upstream.push(UpstreamSection {
        name: "u".into(),
        servers: vec![upstream.to_string()],
        ..Default::default()
    });
    file.route.push(RouteSection {
        name: "r".into(),
        path_prefix: Some("/".into()),
        upstream: "u".into(),
        auth: Some(keygate::config::AuthMode::Public.into()),
        ..Default::default()
    });
    file
}

/// The environment of a binary that logs everything (the tests that no log
/// line holds a secret).
pub const TRACE_ENV: &[(&str, &str)] = &[
    ("KEYGATE_HASH_SECRET", super::gateway::HASH_SECRET),
    ("KEYGATE_LOG", "trace"),
];

/// A SQLite store in `dir`, `upstream` served on a public route, logging at
/// trace level, a 2 s shutdown grace.
pub fn trace_config(dir: &Path, upstream: SocketAddr) -> FileConfig {
    let db = format!("sqlite://{}", dir.join("keygate.db").display());
    let mut file = serving_config(&db, upstream);
    file.route[0].auth = None;
    file.log.level = Some("trace".into());
    file.gateway.shutdown_grace = Some("2s".into());
    file
}

/// Creates a key (owner `o`) through the CLI; its secret.
pub fn cli_key(config: &Path, env: &[(&str, &str)]) -> String {
    let args = ["keys", "create", "--owner", "o", "--name", "n", "--json"];
    let (code, out, err) = run(config, &args, env);
    assert_eq!(code, 0, "{err}");
    let key: serde_json::Value = serde_json::from_str(&out).expect("json");
    key["secret"].as_str().expect("secret").to_string()
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_keygate")
}

/// A `keygate` command that inherits no `KEYGATE_*` variable from the shell
/// running the tests: only the ones a test passes.
fn command(env: &[(&str, &str)]) -> Command {
    let mut c = Command::new(bin());
    for (k, _) in std::env::vars() {
        if k.starts_with("KEYGATE_") {
            c.env_remove(k);
        }
    }
    c.envs(env.iter().copied());
    c
}

/// Runs `keygate --config <path> <args>` to completion.
pub fn run(config: &Path, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut c = command(env);
    c.arg("--config").arg(config).args(args);
    output(c)
}

/// Runs `keygate <args>` in `dir` (so the default `config/keygate.toml` is used).
pub fn run_in(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut c = command(env);
    c.current_dir(dir).args(args);
    output(c)
}

fn output(mut c: Command) -> (i32, String, String) {
    let out = c.output().expect("run keygate");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub struct Process {
    pub child: Child,
    pub proxy: SocketAddr,
    pub admin: SocketAddr,
    pub dir: PathBuf,
    logs: mpsc::Receiver<String>,
    /// Lines logged before "keygate is serving", and any read since.
    seen: std::cell::RefCell<Vec<String>>,
}

impl Process {
    /// Starts `keygate serve` and waits until it logs where it listens.
    pub fn serve(dir: &Path, config: &Path, env: &[(&str, &str)]) -> Process {
        Self::serve_with(dir, config, &[], env)
    }

    /// Starts `keygate serve <args>` (e.g. `--upgrade`) and waits until it
    /// logs where it listens.
    pub fn serve_with(dir: &Path, config: &Path, args: &[&str], env: &[(&str, &str)]) -> Process {
        let mut child = command(env)
            .current_dir(dir)
            .arg("--config")
            .arg(config)
            .arg("serve")
            .args(args)
            .env("KEYGATE_LOG_FORMAT", "json")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn keygate serve");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if line.contains("keygate is serving") {
                        let v: serde_json::Value =
                            serde_json::from_str(&line).expect("json log line");
                        let addr = |k: &str| {
                            v[k].as_str()
                                .and_then(|s| s.parse().ok())
                                .expect("address in log")
                        };
                        return Process {
                            proxy: addr("proxy"),
                            admin: addr("admin"),
                            child,
                            dir: dir.to_owned(),
                            logs: rx,
                            seen: std::cell::RefCell::new(seen),
                        };
                    }
                    seen.push(line);
                }
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("keygate did not start; its log:\n{}", seen.join("\n"));
                }
            }
        }
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) with a pid we own.
        let rc = unsafe { libc::kill(self.child.id() as i32, sig) };
        assert_eq!(rc, 0, "kill failed");
    }

    /// SIGTERM, then a wait (off the async runtime) of up to `timeout` for a
    /// clean exit; the process comes back for its logs.
    pub async fn terminate(mut self, timeout: Duration) -> Process {
        self.signal(libc::SIGTERM);
        tokio::task::spawn_blocking(move || {
            let exit = self.wait(timeout).expect("exited");
            assert!(exit.0.success(), "{exit:?}");
            self
        })
        .await
        .expect("join")
    }

    /// Waits for exit up to `timeout`; returns the status and how long it took.
    pub fn wait(&mut self, timeout: Duration) -> Option<(ExitStatus, Duration)> {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some((status, start.elapsed()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Every log line so far.
    pub fn logs(&self) -> Vec<String> {
        let mut seen = self.seen.borrow_mut();
        seen.extend(self.logs.try_iter());
        seen.clone()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
