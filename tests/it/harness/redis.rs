//! Real Redis for tests: a `redis-server` per test on a free port, which tests
//! can kill, pause (SIGSTOP), resume and restart.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::procs::{self, ScratchDir};

pub struct RedisServer {
    pub port: u16,
    dir: ScratchDir,
    child: Option<Child>,
}

impl RedisServer {
    pub fn start() -> RedisServer {
        let mut s = RedisServer {
            port: procs::free_port(),
            dir: ScratchDir::new("redis"),
            child: None,
        };
        s.boot();
        s
    }

    fn boot(&mut self) {
        let bin = procs::find("redis-server", &[]).unwrap_or_else(|| {
            panic!("`redis-server` not found (install Debian's `redis-server` package); the tests need a real Redis")
        });
        let mut cmd = Command::new(bin);
        cmd.args([
            "--port",
            &self.port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .arg("--dir")
        .arg(self.dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        self.child = Some(procs::spawn(cmd, libc::SIGKILL).expect("spawn redis-server"));
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if redis_ping(self.port) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server did not start on port {}", self.port);
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            procs::signal(&c, libc::SIGKILL);
            let _ = c.wait();
        }
    }

    pub fn restart(&mut self) {
        self.kill();
        self.boot();
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

    /// Runs a command with a fresh connection.
    pub fn cmd(&self, args: &[&str]) -> redis::Value {
        let client = redis::Client::open(self.url()).expect("client");
        let mut conn = client
            .get_connection_with_timeout(Duration::from_secs(5))
            .expect("connect to test redis");
        let mut c = redis::cmd(args[0]);
        for a in &args[1..] {
            c.arg(*a);
        }
        c.query(&mut conn).expect("redis command")
    }

    /// `calls` of one command from `INFO commandstats`.
    pub fn calls(&self, command: &str) -> u64 {
        let info = match self.cmd(&["INFO", "commandstats"]) {
            redis::Value::BulkString(b) => String::from_utf8_lossy(&b).into_owned(),
            redis::Value::VerbatimString { text, .. } => text,
            other => format!("{other:?}"),
        };
        info.lines()
            .find_map(|l| l.strip_prefix(&format!("cmdstat_{command}:calls=")))
            .and_then(|rest| rest.split(',').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    }

    /// Integer values of keys matching a pattern, by key.
    pub fn counters(&self, pattern: &str) -> std::collections::BTreeMap<String, i64> {
        let keys: Vec<String> = match self.cmd(&["KEYS", pattern]) {
            redis::Value::Array(v) => v
                .into_iter()
                .filter_map(|k| match k {
                    redis::Value::BulkString(b) => Some(String::from_utf8_lossy(&b).into_owned()),
                    _ => None,
                })
                .collect(),
            _ => vec![],
        };
        keys.into_iter()
            .map(|k| {
                let v = match self.cmd(&["GET", &k]) {
                    redis::Value::BulkString(b) => {
                        String::from_utf8_lossy(&b).parse().unwrap_or(-1)
                    }
                    _ => -1,
                };
                (k, v)
            })
            .collect()
    }
}

fn redis_ping(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect_timeout(
        &([127, 0, 0, 1], port).into(),
        Duration::from_millis(200),
    ) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    if s.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 7];
    s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.resume();
        self.kill();
    }
}
