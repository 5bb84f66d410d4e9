//! Requests on one thread share script calls: a request whose thread has no
//! call in flight is sent at once, as a batch of one; requests that arrive
//! while a call is in flight wait for it to come back and then go together,
//! as one `EVALSHA` of the script over all of them (see [`super::script`]).
//! Redis runs the batch as one script, request after request, so every
//! request is decided exactly as if it had been sent alone, in arrival order.
//!
//! No timer: an idle gateway sends each request at once; under load batches
//! grow to what arrives during one round trip (at most [`MAX_BATCH`]), which
//! saves client CPU (one command to encode, send and parse), Redis CPU (one
//! script run) and Redis commands per request. A request waits for the call
//! in flight and then its own; its `ratelimit.timeout` bounds that wait, and
//! a request that gave up before its batch was sent is left out of it (not
//! counted).
//!
//! On a Redis Cluster a call's keys must share one hash slot, so requests
//! queue per slot (every key of one request carries one hash tag).

use std::collections::VecDeque;
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

/// Requests per script call at most (Redis runs a script alone, so one call
/// must not hold it for long); more wait for the next call.
pub const MAX_BATCH: usize = 128;

/// The KEYS and ARGV of requests that go to Redis in one call.
#[derive(Default)]
pub(super) struct Batch {
    keys: Cmd,
    args: Cmd,
    /// Per request: how many KEYS and ARGV it takes.
    sizes: Vec<(usize, usize)>,
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
        let credit = usize::from(call.credit.is_some());
        self.sizes.push((2 * n + credit, 2 + 5 * n + 5 * credit));
    }

    pub fn len(&self) -> usize {
        self.sizes.len()
    }

    /// `EVALSHA <sha> <nkeys> KEYS... <requests> ARGV...` of the requests
    /// marked in `keep`.
    fn command(&self, sha: &str, keep: &[bool]) -> Cmd {
        let kept = |i: usize| keep.get(i).copied().unwrap_or(false);
        let nkeys: usize = (0..self.len())
            .filter(|&i| kept(i))
            .map(|i| self.sizes[i].0)
            .sum();
        let (keys, args) = (self.keys.args_iter(), self.args.args_iter());
        let mut cmd = Cmd::with_capacity(4 + keys.len() + args.len(), 64 + 48 * keys.len());
        cmd.arg("EVALSHA").arg(sha).arg(nkeys);
        copy_kept(&mut cmd, keys, self.sizes.iter().map(|s| s.0), &kept);
        cmd.arg((0..self.len()).filter(|&i| kept(i)).count());
        copy_kept(&mut cmd, args, self.sizes.iter().map(|s| s.1), &kept);
        cmd
    }

    /// Sends the requests marked in `keep`; if Redis lost the script (a
    /// restart, `SCRIPT FLUSH`, a failover), loads it and sends them again (a
    /// script that was not found ran nothing). One row per request sent.
    pub async fn send(&self, conn: &mut Conn, script: &redis::Script, keep: &[bool]) -> Replies {
        let cmd = self.command(script.get_hash(), keep);
        let rows: Vec<Vec<i64>> = match cmd.query_async(conn).await {
            Err(e) if e.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                script.load_async(conn).await?;
                cmd.query_async(conn).await?
            }
            r => r?,
        };
        if rows.len() != keep.iter().filter(|k| **k).count() {
            return Err(RedisError::from((
                ErrorKind::Parse,
                "rate-limit script: one reply per request expected",
            )));
        }
        Ok(rows)
    }
}

/// Copies the arguments of the kept requests; `sizes`: each request's count.
fn copy_kept<'a>(
    to: &mut Cmd,
    mut from: impl Iterator<Item = Arg<&'a [u8]>>,
    sizes: impl Iterator<Item = usize>,
    kept: &impl Fn(usize) -> bool,
) {
    for (i, n) in sizes.enumerate() {
        for arg in from.by_ref().take(n) {
            if let (true, Arg::Simple(bytes)) = (kept(i), arg) {
                to.arg(bytes);
            }
        }
    }
}

type Sender = oneshot::Sender<Result<Vec<i64>, RedisError>>;

/// Requests waiting for one call, and who to tell.
#[derive(Default)]
struct Pending {
    batch: Batch,
    answers: Vec<Sender>,
}

/// The requests waiting on one thread's connection, in calls of at most
/// [`MAX_BATCH`], and whether a call is in flight (then the call's task
/// sends them when it comes back).
#[derive(Default)]
struct Queue {
    calls: VecDeque<Pending>,
    sending: bool,
}

#[derive(Default)]
pub(super) struct Combiner {
    queue: Mutex<Queue>,
}

impl Combiner {
    /// Queues one request; starts the sending task (with its own handles on
    /// the connection and script) if no call is in flight.
    pub fn submit(
        self: &Arc<Self>,
        call: &Call<'_>,
        conn: &Conn,
        script: &Arc<redis::Script>,
        timeout: Duration,
        sizes: &Histogram,
    ) -> Answer {
        let (tx, rx) = oneshot::channel();
        let start = {
            let mut q = self.queue.lock();
            if q.calls.back().is_none_or(|p| p.answers.len() >= MAX_BATCH) {
                q.calls.push_back(Pending::default());
            }
            if let Some(p) = q.calls.back_mut() {
                p.batch.push(call);
                p.answers.push(tx);
            }
            !std::mem::replace(&mut q.sending, true)
        };
        if start {
            let task = Sending {
                combiner: self.clone(),
                finished: false,
            };
            let run = task.run(conn.clone(), script.clone(), timeout, sizes.clone());
            tokio::spawn(run);
        }
        rx
    }
}

/// The sending task of one combiner. Should it end before its queue is empty
/// (its runtime shutting down), its drop tells the waiting requests (they see
/// the call abandoned) and lets the next request start a new task.
struct Sending {
    combiner: Arc<Combiner>,
    finished: bool,
}

impl Sending {
    /// Sends what is queued, one call at a time, until nothing is.
    async fn run(
        mut self,
        mut conn: Conn,
        script: Arc<redis::Script>,
        timeout: Duration,
        sizes: Histogram,
    ) {
        loop {
            let Pending { batch, answers } = {
                let mut q = self.combiner.queue.lock();
                match q.calls.pop_front() {
                    Some(p) => p,
                    None => {
                        q.sending = false;
                        self.finished = true;
                        return;
                    }
                }
            };
            // A request that gave up waiting (its timeout, its client gone)
            // is not sent: it must not be counted.
            let keep: Vec<bool> = answers.iter().map(|tx| !tx.is_closed()).collect();
            if !keep.contains(&true) {
                continue;
            }
            sizes.observe(keep.iter().filter(|k| **k).count() as f64);
            let call = batch.send(&mut conn, &script, &keep);
            let replies = match tokio::time::timeout(timeout, call).await {
                Ok(r) => r,
                Err(_) => Err(RedisError::from((
                    ErrorKind::Client,
                    "rate-limit script call timed out",
                ))),
            };
            answer(answers, &keep, replies);
        }
    }
}

impl Drop for Sending {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        // Abandoned with requests queued: their answers go with it (they
        // fall back), and the next request starts a new task.
        let mut q = self.combiner.queue.lock();
        q.calls.clear();
        q.sending = false;
    }
}

/// Gives each request sent its row, or each the error. A request that gave
/// up waiting after it was sent is not there to be told.
fn answer(answers: Vec<Sender>, keep: &[bool], replies: Replies) {
    let sent = answers
        .into_iter()
        .zip(keep)
        .filter(|(_, k)| **k)
        .map(|(tx, _)| tx);
    match replies {
        Ok(rows) => {
            for (tx, row) in sent.zip(rows) {
                let _ = tx.send(Ok(row));
            }
        }
        Err(e) => {
            for tx in sent {
                let _ = tx.send(Err(e.clone()));
            }
        }
    }
}
