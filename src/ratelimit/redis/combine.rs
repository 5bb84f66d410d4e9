//! Requests on one thread share script calls: a request whose thread has no
//! call in flight is sent at once, as a batch of one; requests that arrive
//! while a call is in flight wait for it to come back and then go together,
//! as one `EVALSHA` of the script over all of them (see [`super::script`]).
//! Redis runs the batch as one script, request after request, so every
//! request is decided exactly as if it had been sent alone: those of one key
//! in arrival order (they share a group, see [`super::batch`]), those of
//! different keys in any order (they arrived in the same round trip).
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
use redis::{ErrorKind, RedisError};
use tokio::sync::oneshot;

use super::Call;
use super::batch::{Batch, Rows};
use super::target::Conn;

/// What one request is told: its row of the script's reply.
type Answer = oneshot::Receiver<Result<Vec<i64>, RedisError>>;

/// Requests per script call at most (Redis runs a script alone, so one call
/// must not hold it for long); more wait for the next call.
pub const MAX_BATCH: usize = 128;

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
fn answer(answers: Vec<Sender>, keep: &[bool], rows: Rows) {
    match rows {
        Ok(rows) => {
            let mut answers: Vec<Option<Sender>> = answers.into_iter().map(Some).collect();
            for (i, row) in rows {
                if let Some(tx) = answers.get_mut(i).and_then(Option::take) {
                    let _ = tx.send(Ok(row));
                }
            }
        }
        Err(e) => {
            for (tx, _) in answers.into_iter().zip(keep).filter(|(_, k)| **k) {
                let _ = tx.send(Err(e.clone()));
            }
        }
    }
}
