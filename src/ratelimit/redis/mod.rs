//! The Redis backend: one `EVALSHA` per request checks and counts every window
//! atomically. Concurrent requests share one multiplexed connection, so they
//! are pipelined. Every key of one API key carries the hash tag `{<limit id>}`,
//! so a request's keys live in one Redis Cluster slot. Standalone, cluster and
//! sentinel topologies differ only in how a connection is opened ([`target`]).

mod target;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::ThreadId;
use std::time::Duration;

use prometheus::IntCounter;
use redis::{ErrorKind, RedisError, ServerErrorKind};
use uuid::Uuid;

use super::breaker::Breaker;
use super::decision::{Check, Counts, Scope, Span};
use super::window::Window;
use crate::config::RedisConfig;
pub use target::TargetError as BackendError;
use target::{Conn, Target};

/// KEYS: per check, its current and previous bucket.
/// ARGV: per check, limit, bucket length (ms), elapsed in bucket (ms), sliding (1/0), TTL (ms).
/// Reads every window, then counts the request in all of them or in none.
/// Returns `{allowed, curr1, prev1, curr2, prev2, ...}` as they were before.
const SCRIPT: &str = r#"
local n = #KEYS / 2
local vals = redis.call('MGET', unpack(KEYS))
local out = {1}
for i = 1, n do
  local a = (i - 1) * 5
  local c = tonumber(vals[2 * i - 1] or 0) or 0
  local p = 0
  if ARGV[a + 4] == '1' then p = tonumber(vals[2 * i] or 0) or 0 end
  out[2 * i] = c
  out[2 * i + 1] = p
  local len = tonumber(ARGV[a + 2])
  local est = p * ((len - tonumber(ARGV[a + 3])) / len) + c
  if est + 1 > tonumber(ARGV[a + 1]) then out[1] = 0 end
end
if out[1] == 1 then
  for i = 1, n do
    local v = redis.call('INCR', KEYS[2 * i - 1])
    if v == 1 then redis.call('PEXPIRE', KEYS[2 * i - 1], ARGV[(i - 1) * 5 + 5]) end
  end
end
return out
"#;

const MONTH_TTL_MARGIN_MS: u64 = 86_400_000;

pub struct RedisBackend {
    target: Target,
    script: redis::Script,
    /// The master a sentinel named last, and a count of changes.
    master: parking_lot::Mutex<Option<String>>,
    master_changes: IntCounter,
    pub(super) breaker: Breaker,
    /// Bumped when Redis comes back after an outage: threads reconnect.
    generation: AtomicU64,
    /// One connection per proxy thread, opened on that thread: its driver task
    /// runs on the same runtime as the requests, so a call crosses no threads.
    conns: papaya::HashMap<ThreadId, Arc<Slot>>,
}

struct Slot {
    generation: u64,
    conn: tokio::sync::OnceCell<Conn>,
}

/// The Redis key of one bucket: `<prefix><scope>:<window>:<bucket>`, the prefix
/// being `kg:{<limit id>}:` (see [`key_prefix`]).
pub fn bucket_key(
    prefix: &str,
    scope: Scope,
    route_name: &str,
    window: Window,
    bucket: u64,
) -> String {
    let mut k = String::with_capacity(prefix.len() + route_name.len() + 32);
    k.push_str(prefix);
    match scope {
        Scope::Key => k.push_str("k:"),
        Scope::Route(_) => {
            k.push_str("r:");
            k.push_str(route_name);
            k.push(':');
        }
    }
    k.push_str(window.as_str());
    k.push(':');
    k.push_str(itoa::Buffer::new().format(bucket));
    k
}

/// The keys of a window's current bucket and the one before it, as the
/// scripts take them.
pub fn bucket_pair(
    prefix: &str,
    scope: Scope,
    route_name: &str,
    window: Window,
    bucket: u64,
) -> [String; 2] {
    [
        bucket_key(prefix, scope, route_name, window, bucket),
        bucket_key(prefix, scope, route_name, window, bucket.wrapping_sub(1)),
    ]
}

/// How long a bucket's counter must live: a sliding window reads it as the
/// previous bucket too; a month's lives past its end by a margin.
pub fn bucket_ttl_ms(span: &Span) -> u64 {
    if span.sliding {
        2 * span.bucket.len_ms + 1_000
    } else {
        span.left_ms() + MONTH_TTL_MARGIN_MS
    }
}

/// `kg:{<limit id>}:`: the hash tag keeps one key's buckets in one cluster slot.
pub fn key_prefix(id: Uuid) -> String {
    format!("kg:{{{id}}}:")
}

impl RedisBackend {
    /// Reads the configuration (and CA file); does not connect.
    pub fn new(
        cfg: &RedisConfig,
        breaker_failures: u32,
        master_changes: IntCounter,
    ) -> Result<RedisBackend, BackendError> {
        Ok(RedisBackend {
            target: Target::new(cfg)?,
            script: redis::Script::new(SCRIPT),
            master: parking_lot::Mutex::new(None),
            master_changes,
            breaker: Breaker::new(breaker_failures),
            generation: AtomicU64::new(0),
            conns: papaya::HashMap::new(),
        })
    }

    pub fn topology(&self) -> &'static str {
        self.target.topology()
    }

    async fn open(&self, timeout: Duration) -> Result<Conn, BackendError> {
        let opened = self.target.open(timeout).await?;
        let mut conn = opened.conn;
        redis::cmd("PING").query_async::<String>(&mut conn).await?;
        self.script.load_async(&mut conn).await?;
        if let Conn::Single(c) = &mut conn {
            // Requests bound their own waits; the connection must not time out
            // a pipelined response that is merely behind others.
            c.set_response_timeout(Duration::from_secs(3600));
        }
        if let Some(master) = opened.master {
            self.saw_master(master);
        }
        Ok(conn)
    }

    /// Notes the master a sentinel named; a different one than before is a failover.
    fn saw_master(&self, master: String) {
        let mut last = self.master.lock();
        match last.as_deref() {
            Some(old) if old != master => {
                tracing::warn!(from = old, to = %master, "rate limits: the sentinels name a new Redis master (failover)");
                self.master_changes.inc();
            }
            None => {
                tracing::info!(master = %master, "rate limits: the sentinels name the Redis master")
            }
            _ => {}
        }
        *last = Some(master);
    }

    /// Checks that Redis answers on a fresh connection (start-up and breaker
    /// probes); on success, threads open new connections on their next call.
    pub async fn probe(&self, timeout: Duration) -> Result<(), BackendError> {
        self.open(timeout).await?;
        self.generation.fetch_add(1, Ordering::AcqRel);
        Ok(())
    }

    /// This thread's connection, opened on first use.
    async fn conn(&self, timeout: Duration) -> Result<Conn, BackendError> {
        let generation = self.generation.load(Ordering::Acquire);
        let tid = std::thread::current().id();
        let slot = {
            let map = self.conns.pin();
            match map.get(&tid) {
                Some(s) if s.generation == generation => s.clone(),
                _ => {
                    let s = Arc::new(Slot {
                        generation,
                        conn: tokio::sync::OnceCell::new(),
                    });
                    map.insert(tid, s.clone());
                    s
                }
            }
        };
        slot.conn
            .get_or_try_init(|| self.open(timeout))
            .await
            .cloned()
    }

    /// After an error that means this connection is no good (dropped, or
    /// talking to a replica after a failover), this thread reconnects on its
    /// next call, which for sentinel means asking the sentinels again.
    fn failed_with(&self, e: RedisError) -> BackendError {
        let stale = e.is_connection_dropped()
            || e.is_io_error()
            || e.kind() == ErrorKind::Server(ServerErrorKind::ReadOnly);
        if stale {
            self.conns.pin().remove(&std::thread::current().id());
        }
        BackendError::Redis(e)
    }

    /// Runs a script invocation on this thread's connection.
    pub async fn invoke(
        &self,
        inv: &redis::ScriptInvocation<'_>,
        timeout: Duration,
    ) -> Result<Vec<i64>, BackendError> {
        let mut conn = self.conn(timeout).await?;
        inv.invoke_async(&mut conn)
            .await
            .map_err(|e| self.failed_with(e))
    }

    /// Runs the script; returns whether the request was admitted and counted,
    /// and the counts before it.
    pub async fn check(
        &self,
        prefix: &str,
        checks: &[Check],
        spans: &[Span],
        route_name: &str,
        timeout: Duration,
    ) -> Result<(bool, Vec<Counts>), BackendError> {
        let mut inv = self.script.prepare_invoke();
        for (c, s) in checks.iter().zip(spans) {
            for k in bucket_pair(prefix, c.scope, route_name, c.window, s.bucket.index) {
                inv.key(k);
            }
            let ttl = bucket_ttl_ms(s);
            inv.arg(c.limit)
                .arg(s.bucket.len_ms)
                .arg(s.elapsed_ms)
                .arg(u8::from(s.sliding))
                .arg(ttl);
        }
        let out = self.invoke(&inv, timeout).await?;
        if out.len() != 1 + 2 * checks.len() {
            return Err(BackendError::Redis(RedisError::from((
                ErrorKind::Parse,
                "unexpected rate-limit script reply",
            ))));
        }
        let counts = out[1..]
            .chunks(2)
            .map(|p| Counts {
                curr: p[0].max(0) as u64,
                prev: p[1].max(0) as u64,
            })
            .collect();
        Ok((out[0] == 1, counts))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_share_a_hash_tag() {
        let id = Uuid::from_u128(5);
        let c = Check {
            scope: Scope::Route(crate::routes::RouteId(1)),
            window: Window::Minute,
            limit: 5,
        };
        let p = key_prefix(id);
        let k = bucket_key(&p, c.scope, "orders", c.window, 42);
        assert_eq!(k, format!("kg:{{{id}}}:r:orders:minute:42"));
        let k2 = bucket_key(&p, Scope::Key, "orders", c.window, 42);
        assert_eq!(k2, format!("kg:{{{id}}}:k:minute:42"));
    }
}
