//! The built `keygate` binary as a child process, for signals and the CLI.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_keygate")
}

/// Runs `keygate --config <path> <args>` to completion.
pub fn run(config: &Path, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let out = Command::new(bin())
        .arg("--config")
        .arg(config)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("run keygate");
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
}

impl Process {
    /// Starts `keygate serve` and waits until it logs where it listens.
    pub fn serve(dir: &Path, config: &Path, env: &[(&str, &str)]) -> Process {
        let mut child = Command::new(bin())
            .current_dir(dir)
            .arg("--config")
            .arg(config)
            .arg("serve")
            .env("KEYGATE_LOG_FORMAT", "json")
            .envs(env.iter().copied())
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

    /// Log lines so far.
    pub fn logs(&self) -> Vec<String> {
        self.logs.try_iter().collect()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
