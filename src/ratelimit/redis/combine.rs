//! Requests on one thread share script calls: a request whose thread has no
//! call in flight is sent at once, as a batch of one; requests that arrive
//! while a call is in flight wait for it to come back and then go together,
//! as one `EVALSHA` of the script over all of them (see [`super::script`]).
//! Redis runs the batch as one script, request after request, so every
//! request is decided exactly as if it had been sent alone, in arrival order.
//!
//! No timer: an idle gateway sends each request at once; under load batches
//! grow to what arrives during one round trip, which saves client CPU (one
//! command to encode, send and parse) and Redis CPU (one script run) per
//! request. A request waits at most for the call in flight and its own.
//!
//! Only standalone and sentinel connections combine: in a Redis Cluster the
//! requests of one batch could live in different slots.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use prometheus::Histogram;
use redis::{Arg, Cmd, ErrorKind, RedisError, ServerErrorKind};
use tokio::sync::oneshot;

use super::keys::BucketKey;
use super::target::Conn;
use super::{BALANCE_TTL_MS, Call, bucket_ttl_ms};
use crate::ratelimit::decision::Scope;

/// One script reply per request, in the order they were pushed.
type Replies = Result<Vec<Vec<i64>>, RedisError>;

/// What one request is told: its row of the script's reply.
type Answer = oneshot::Receiver<Result<Vec<i64>, RedisError>>;

/// The KEYS and ARGV of requests that go to Redis in one call.
#[derive(Default)]
pub(super) struct Batch {
    keys: Cmd,
    args: Cmd,
    nkeys: usize,
    len: usize,
}

impl Batch {
    /// Adds one request: KEYS, per check its current and previous bucket,
    /// then its balance; ARGV as the script reads them.
    pub fn push(&mut self, call: &Call<'_>) {
        let n = call.checks.len();
        for (c, s) in call.checks.iter().zip(call.spans) {
            let prefix = match (c.scope, call.owner_prefix) {
                (Scope::Owner, Some(p)) => p,
                _ => call.key_prefix,
            };
            for bucket in [s.bucket.index, s.bucket.index.wrapping_sub(1)] {
                self.keys.arg(BucketKey {
                    prefix,
                    scope: c.scope,
                    route_name: call.route_name,
                    window: c.window,
                    bucket,
                });
            }
        }
        if let Some(cr) = &call.credit {
            self.keys.arg(cr.cell);
        }
        self.nkeys += 2 * n + usize::from(call.credit.is_some());
        self.args.arg(n).arg(u8::from(call.credit.is_some()));
        for (c, s) in call.checks.iter().zip(call.spans) {
            self.args
                .arg(c.limit)
                .arg(s.bucket.len_ms)
                .arg(s.elapsed_ms)
                .arg(u8::from(s.sliding))
                .arg(bucket_ttl_ms(s));
        }
        if let Some(cr) = &call.credit {
            self.args
                .arg(cr.ask.epoch)
                .arg(cr.ask.granted)
                .arg(cr.ask.reserve)
                .arg(cr.seed.unwrap_or(-1))
                .arg(BALANCE_TTL_MS);
        }
        self.len += 1;
    }

    pub fn len(&self) -> usize {
        self.len
    }

    /// `EVALSHA <sha> <nkeys> KEYS... <requests> ARGV...`
    fn command(&self, sha: &str) -> Cmd {
        let (keys, args) = (self.keys.args_iter(), self.args.args_iter());
        let mut cmd = Cmd::with_capacity(4 + keys.len() + args.len(), 64 + 48 * keys.len());
        cmd.arg("EVALSHA").arg(sha).arg(self.nkeys);
        copy_args(&mut cmd, &self.keys);
        cmd.arg(self.len);
        copy_args(&mut cmd, &self.args);
        cmd
    }

    /// Sends the batch; if Redis lost the script (a restart, `SCRIPT FLUSH`,
    /// a failover), loads it and sends the batch again (a script that was
    /// not found ran nothing). The reply has one row per request.
    pub async fn send(&self, conn: &mut Conn, script: &redis::Script) -> Replies {
        let cmd = self.command(script.get_hash());
        let rows: Vec<Vec<i64>> = match cmd.query_async(conn).await {
            Err(e) if e.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                script.load_async(conn).await?;
                cmd.query_async(conn).await?
            }
            r => r?,
        };
        if rows.len() != self.len {
            return Err(RedisError::from((
                ErrorKind::Parse,
                "rate-limit script: one reply per request expected",
            )));
        }
        Ok(rows)
    }
}

fn copy_args(to: &mut Cmd, from: &Cmd) {
    for arg in from.args_iter() {
        if let Arg::Simple(bytes) = arg {
            to.arg(bytes);
        }
    }
}

/// The requests waiting on one thread's connection, and whether a call is
/// in flight (then the call's task sends them when it comes back).
#[derive(Default)]
struct Queue {
    batch: Batch,
    answers: Vec<oneshot::Sender<Result<Vec<i64>, RedisError>>>,
    sending: bool,
}

#[derive(Default)]
pub(super) struct Combiner {
    queue: Mutex<Queue>,
}

impl Combiner {
    /// Queues one request; starts the sending task if no call is in flight.
    pub fn submit(
        self: &Arc<Self>,
        call: &Call<'_>,
        conn: Conn,
        script: Arc<redis::Script>,
        timeout: Duration,
        sizes: &Histogram,
    ) -> Answer {
        let (tx, rx) = oneshot::channel();
        let start = {
            let mut q = self.queue.lock();
            q.batch.push(call);
            q.answers.push(tx);
            !std::mem::replace(&mut q.sending, true)
        };
        if start {
            let run = self.clone().run(conn, script, timeout, sizes.clone());
            tokio::spawn(run);
        }
        rx
    }

    /// Sends what is queued, one call at a time, until nothing is.
    async fn run(
        self: Arc<Self>,
        mut conn: Conn,
        script: Arc<redis::Script>,
        timeout: Duration,
        sizes: Histogram,
    ) {
        loop {
            let (batch, answers) = {
                let mut q = self.queue.lock();
                if q.answers.is_empty() {
                    q.sending = false;
                    return;
                }
                (std::mem::take(&mut q.batch), std::mem::take(&mut q.answers))
            };
            sizes.observe(batch.len() as f64);
            let replies = match tokio::time::timeout(timeout, batch.send(&mut conn, &script)).await
            {
                Ok(r) => r,
                Err(_) => Err(RedisError::from((
                    ErrorKind::Client,
                    "rate-limit script call timed out",
                ))),
            };
            answer(answers, replies);
        }
    }
}

/// Gives each request its row, or each the error. A request that gave up
/// waiting (its own timeout) is not there to be told.
fn answer(answers: Vec<oneshot::Sender<Result<Vec<i64>, RedisError>>>, replies: Replies) {
    match replies {
        Ok(rows) => {
            for (tx, row) in answers.into_iter().zip(rows) {
                let _ = tx.send(Ok(row));
            }
        }
        Err(e) => {
            for tx in answers {
                let _ = tx.send(Err(e.clone()));
            }
        }
    }
}
