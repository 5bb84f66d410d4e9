//! Building blocks for the TLS, cluster and sentinel Redis setups: one
//! `redis-server` process with its own directory, config and log.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::procs::{self, ScratchDir};

pub fn binary(name: &str) -> PathBuf {
    procs::find(name, &[]).unwrap_or_else(|| {
        panic!("`{name}` not found (install Debian's `redis-server` and `redis-tools` packages); the tests need a real Redis")
    })
}

/// One redis-server (or sentinel) process, killed on drop.
pub struct RedisNode {
    pub port: u16,
    pub dir: ScratchDir,
    child: Option<Child>,
}

impl RedisNode {
    /// Writes `config` (redis.conf lines, without port/dir/logfile) to
    /// `<dir>/redis.conf` and runs `redis-server <conf> <extra_args>`; waits
    /// until the log says it is ready. `port` is only recorded (and used in
    /// error messages): `config` sets the listening port(s).
    pub fn start(tag: &str, port: u16, config: &str, extra_args: &[&str]) -> RedisNode {
        Self::start_until(tag, port, config, extra_args, "Ready to accept connections")
    }

    /// Like `start`, waiting for `ready` in the log instead.
    pub fn start_until(
        tag: &str,
        port: u16,
        config: &str,
        extra_args: &[&str],
        ready: &str,
    ) -> RedisNode {
        let dir = ScratchDir::new(tag);
        let conf = dir.path().join("redis.conf");
        let log = dir.path().join("redis.log");
        let text = format!(
            "bind 127.0.0.1\nsave \"\"\nappendonly no\ndir {}\nlogfile {}\n{config}\n",
            dir.path().display(),
            log.display()
        );
        std::fs::write(&conf, text).expect("write redis.conf");
        let mut cmd = Command::new(binary("redis-server"));
        cmd.arg(&conf)
            .args(extra_args)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = procs::spawn(cmd, libc::SIGKILL).expect("spawn redis-server");
        let mut node = RedisNode {
            port,
            dir,
            child: Some(child),
        };
        node.wait_log(ready, Duration::from_secs(10));
        node
    }

    pub fn conf_path(&self) -> PathBuf {
        self.dir.path().join("redis.conf")
    }

    /// The node's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default()
    }

    /// Waits until the log contains `needle`; panics with the log if the
    /// process exits or `timeout` passes.
    pub fn wait_log(&mut self, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.log().contains(needle) {
                return;
            }
            if let Some(c) = &mut self.child {
                if let Ok(Some(status)) = c.try_wait() {
                    panic!(
                        "redis-server (port {}) exited with {status}:\n{}",
                        self.port,
                        self.log()
                    );
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "redis-server (port {}) not ready ({needle:?}) after {timeout:?}:\n{}",
            self.port,
            self.log()
        );
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            procs::signal(&c, libc::SIGCONT);
            procs::signal(&c, libc::SIGKILL);
            let _ = c.wait();
        }
    }

    pub fn pause(&self) {
        if let Some(c) = &self.child {
            procs::signal(c, libc::SIGSTOP);
        }
    }

    pub fn resume(&self) {
        if let Some(c) = &self.child {
            procs::signal(c, libc::SIGCONT);
        }
    }
}

impl Drop for RedisNode {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs one command on `url` with a fresh plain connection (1 s timeouts).
pub fn query(url: &str, args: &[&str]) -> redis::RedisResult<redis::Value> {
    let client = redis::Client::open(url)?;
    let mut conn = client.get_connection_with_timeout(Duration::from_secs(1))?;
    conn.set_read_timeout(Some(Duration::from_secs(2)))?;
    let mut c = redis::cmd(args[0]);
    for a in &args[1..] {
        c.arg(*a);
    }
    c.query(&mut conn)
}

/// A reply as text: bulk and verbatim strings as themselves, others `Debug`.
pub fn text(v: &redis::Value) -> String {
    match v {
        redis::Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        redis::Value::SimpleString(s) => s.clone(),
        redis::Value::VerbatimString { text, .. } => text.clone(),
        redis::Value::Int(i) => i.to_string(),
        other => format!("{other:?}"),
    }
}

/// `field:value` from an INFO-style reply.
pub fn info_field(info: &str, field: &str) -> Option<String> {
    info.lines()
        .find_map(|l| l.trim().strip_prefix(&format!("{field}:")))
        .map(str::to_string)
}

/// A port in 20000..22700 where both the port and its cluster bus port
/// (port+10000) are free now and not handed out before. Both stay below
/// Linux's default ephemeral range (32768+), so outgoing connections do not
/// take them.
pub fn port_with_bus() -> u16 {
    use std::sync::Mutex;
    static GIVEN: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    let free = |p: u16| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok();
    loop {
        let port = 20000 + (uuid::Uuid::new_v4().as_u128() % 2700) as u16;
        let mut given = GIVEN.lock().expect("ports");
        if given.contains(&port) || given.contains(&(port + 10000)) {
            continue;
        }
        if free(port) && free(port + 10000) {
            given.push(port);
            given.push(port + 10000);
            return port;
        }
    }
}

/// Polls `f` every 50 ms until it returns `Some` or `timeout` passes.
pub fn poll<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn path_str(p: &Path) -> String {
    p.display().to_string()
}
