//! The Redis backend: one script run checks and counts every window of a
//! request (and debits the credits) atomically ([`script`]). Requests that
//! arrive on a thread while its call is in flight go together in the next
//! `EVALSHA` ([`combine`]; on a cluster, those of one hash slot), a busy
//! key's requests as one group whose counters Redis reads and writes once
//! ([`batch`]). Every key of one request
//! carries one hash tag, so they live in one Redis Cluster slot: `{<limit id>}`
//! for a key whose owner counts nothing of its own, `{o:<owner id>}` for every
//! key of an owner with shared limits or credits (the owner's counters must
//! share the slot of each of its keys'). Standalone, cluster and sentinel
//! topologies differ only in how a connection is opened ([`target`]).

mod batch;
mod combine;
mod keys;
pub mod script;
mod target;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::ThreadId;
use std::time::Duration;

use prometheus::{Histogram, IntCounter};
use redis::{ErrorKind, RedisError, ServerErrorKind};

use super::breaker::Breaker;
use super::decision::{Check, Span};
use crate::config::RedisConfig;
use crate::credits::cell::Ask;
use combine::Combiner;
pub use keys::{LineagePrefix, bucket_key, bucket_pair, bucket_ttl_ms, key_prefix, owner_tag};
pub use script::{CreditReply, Reply};
pub use target::TargetError as BackendError;
use target::{Conn, Target};

/// Balances outlive any refill period (the TTL is renewed at each refill,
/// set and top-up); a lost one is rebuilt from the ledger.
const BALANCE_TTL_MS: u64 = 400 * 86_400_000;

/// One request's script call.
pub struct Call<'a> {
    /// Where the key's windows (and route caps, and its own balance) live.
    pub key_prefix: &'a str,
    /// Where the owner's windows (and balance) live, when it has any.
    pub owner_prefix: Option<&'a str>,
    pub checks: &'a [Check],
    pub spans: &'a [Span],
    pub route_name: &'a str,
    pub credit: Option<CreditCall<'a>>,
    /// Admissions asked for: 1, or a lease ([`crate::ratelimit::lease`]).
    pub ask: u64,
}

/// The balance part of a call.
pub struct CreditCall<'a> {
    pub cell: &'a str,
    pub ask: Ask,
    /// The ledger's recorded spending, when the balance was found missing.
    pub seed: Option<i64>,
}

/// What the backend counts: failovers seen, requests per script call.
pub struct RedisMetrics {
    pub master_changes: IntCounter,
    pub batch: Histogram,
}

pub struct RedisBackend {
    target: Target,
    script: Arc<redis::Script>,
    settle: redis::Script,
    give_back: redis::Script,
    /// The master a sentinel named last, and a count of changes.
    master: parking_lot::Mutex<Option<String>>,
    metrics: RedisMetrics,
    pub(super) breaker: Breaker,
    /// Bumped when Redis comes back after an outage: threads reconnect.
    generation: AtomicU64,
    /// One connection per proxy thread, opened on that thread: its driver task
    /// runs on the same runtime as the requests, so a call crosses no threads.
    conns: papaya::HashMap<ThreadId, Arc<Slot>>,
}

struct Slot {
    /// The thread whose connection this is (its key in `conns`).
    thread: ThreadId,
    generation: u64,
    conn: tokio::sync::OnceCell<Conn>,
    /// The thread's requests waiting for the call in flight: one queue, or
    /// on a Redis Cluster one per hash slot (a call's keys must share one).
    combiners: papaya::HashMap<u16, Arc<Combiner>>,
}

impl Slot {
    /// Where a request with keys under `prefix` queues.
    fn combiner(&self, conn: &Conn, prefix: &str) -> Arc<Combiner> {
        let group = match conn {
            Conn::Cluster(_) => keys::cluster_slot(prefix),
            Conn::Single(_) => 0,
        };
        self.combiners
            .pin()
            .get_or_insert_with(group, Arc::default)
            .clone()
    }
}

impl RedisBackend {
    /// Reads the configuration (and CA file); does not connect.
    pub fn new(
        cfg: &RedisConfig,
        breaker_failures: u32,
        metrics: RedisMetrics,
    ) -> Result<RedisBackend, BackendError> {
        Ok(RedisBackend {
            target: Target::new(cfg)?,
            script: Arc::new(redis::Script::new(script::SCRIPT)),
            settle: redis::Script::new(script::SETTLE),
            give_back: redis::Script::new(script::GIVE_BACK),
            master: parking_lot::Mutex::new(None),
            metrics,
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
        self.settle.load_async(&mut conn).await?;
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
                self.metrics.master_changes.inc();
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

    /// This thread's slot (its connection is opened by [`Self::ready`]).
    fn slot(&self) -> Arc<Slot> {
        let generation = self.generation.load(Ordering::Acquire);
        let tid = std::thread::current().id();
        let map = self.conns.pin();
        match map.get(&tid) {
            Some(s) if s.generation == generation => s.clone(),
            _ => {
                let s = Arc::new(Slot {
                    thread: tid,
                    generation,
                    conn: tokio::sync::OnceCell::new(),
                    combiners: papaya::HashMap::new(),
                });
                map.insert(tid, s.clone());
                s
            }
        }
    }

    /// The slot's connection, opened on first use.
    async fn ready<'s>(&self, slot: &'s Slot, timeout: Duration) -> Result<&'s Conn, BackendError> {
        slot.conn.get_or_try_init(|| self.open(timeout)).await
    }

    /// After an error that means this connection is no good (dropped, or
    /// talking to a replica after a failover), its thread reconnects on its
    /// next call, which for sentinel means asking the sentinels again. Only
    /// this slot is dropped: the other requests of a failed batch must not
    /// drop the connection a first one already opened again.
    fn failed_with(&self, slot: &Arc<Slot>, e: RedisError) -> BackendError {
        let stale = e.is_connection_dropped()
            || e.is_io_error()
            || e.kind() == ErrorKind::Server(ServerErrorKind::ReadOnly);
        if stale {
            let _ = self
                .conns
                .pin()
                .remove_if(&slot.thread, |_, s| Arc::ptr_eq(s, slot));
        }
        BackendError::Redis(e)
    }

    /// Runs a script invocation on this thread's connection.
    pub async fn invoke(
        &self,
        inv: &redis::ScriptInvocation<'_>,
        timeout: Duration,
    ) -> Result<Vec<i64>, BackendError> {
        let slot = self.slot();
        let mut conn = self.ready(&slot, timeout).await?.clone();
        inv.invoke_async(&mut conn)
            .await
            .map_err(|e| self.failed_with(&slot, e))
    }

    /// Runs the script: whether the request was admitted (counted and
    /// debited), the balance, and the counts before it, in a call shared
    /// with the thread's other requests in flight ([`combine`]; on a Redis
    /// Cluster with those whose keys are in the same hash slot).
    pub async fn check(&self, call: &Call<'_>, timeout: Duration) -> Result<Reply, BackendError> {
        let slot = self.slot();
        let conn = self.ready(&slot, timeout).await?;
        let combiner = slot.combiner(conn, call.key_prefix);
        let answer = combiner.submit(call, conn, &self.script, timeout, &self.metrics.batch);
        let row = answer.await.unwrap_or_else(|_| {
            Err(RedisError::from((
                ErrorKind::Io,
                "rate-limit script call abandoned",
            )))
        });
        let row = row.map_err(|e| self.failed_with(&slot, e))?;
        script::parse(&row, call.checks.len())
    }

    /// Gives unused leased admissions back (at shutdown, on a connection of
    /// its own: the proxy threads' are gone). How many counters took them.
    pub async fn give_back(
        &self,
        unused: &[crate::ratelimit::lease::Unused],
        timeout: Duration,
    ) -> Result<u64, BackendError> {
        let mut conn = self.open(timeout).await?;
        let mut given = 0;
        for u in unused {
            let mut inv = self.give_back.prepare_invoke();
            for k in &u.keys {
                inv.key(k);
            }
            inv.arg(u.n);
            given += inv.invoke_async::<u64>(&mut conn).await?;
        }
        Ok(given)
    }

    /// A post-paid correction of a balance, in the epoch it was charged in.
    pub async fn settle(
        &self,
        cell: &str,
        epoch: i64,
        delta: i64,
        timeout: Duration,
    ) -> Result<(), BackendError> {
        let mut inv = self.settle.prepare_invoke();
        inv.key(cell).arg(epoch).arg(delta);
        self.invoke(&inv, timeout).await.map(|_| ())
    }
}
