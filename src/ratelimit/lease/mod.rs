//! Leases: exact shared limits at nearly the price of local ones.
//!
//! In exact mode with Redis, a request that finds no lease for its key and
//! route asks the script for up to `ratelimit.lease` admissions at once. The
//! script grants what fits every window, at most a sixteenth of the room left
//! (at least one: the request itself), and counts all of it in Redis before
//! it answers. The gateway then admits that many more requests of the same
//! key, route and limits from the lease, in memory, until the lease is used
//! or the shortest window's bucket ends.
//!
//! Why it stays exact: everything a gateway admits was counted in Redis
//! first, so the gateways together never admit more than a limit. The price
//! is the other way: tokens leased and not used before the bucket ends (a
//! gateway whose traffic stopped, or one killed) are counted but unused, so
//! another gateway may be refused while they are. A lease is at most
//! `room / 16`, so near a limit leases shrink to one and every request is
//! decided in Redis as before; for a window of a day or longer (a quota that
//! a lost lease would dent until it ends) also at most `limit / 1024`. At
//! most one lease per key and route is asked for at a time (the others in
//! flight wait for it, or ask for one). One gateway alone admits exactly what
//! it would without leases, unless it uses one key on several routes with
//! caps (each such route has its own lease of the key's windows).
//!
//! A key's requests on routes without caps share one lease: their checks are
//! the same and so are their counters in Redis (a key window's counter does
//! not name the route).
//!
//! Not leased: owner windows and credits (shared by keys, and money), and
//! batched mode (local already). The headers report this gateway's view: the
//! counts Redis had at the last grant, plus what this gateway admitted since.

use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio::sync::futures::OwnedNotified;
use uuid::Uuid;

use super::decision::{Check, Counts, Span, Verdict, statuses};
use super::redis::bucket_key;
use crate::routes::RouteId;

/// The admissions a gateway holds for one key on one route.
#[derive(Default)]
struct Lease {
    /// The plan the lease was granted for: a change (new limits) voids it.
    checks: Vec<Check>,
    /// When the first of its buckets ends (ms).
    until_ms: u64,
    /// Per check: Redis's counts at the grant, less what this gateway holds
    /// unused, plus what it admitted since.
    seen: Vec<Counts>,
    /// Admissions counted in Redis and not yet used.
    left: u64,
    /// A request asking for a lease is in flight.
    asking: bool,
    /// What the last ask was granted: while it is more than one, requests
    /// that find the lease used wait for the ask in flight.
    last_grant: u64,
    /// The last ask got no answer (Redis failed or timed out): its waiters
    /// go to the fallback rather than wait for Redis once more.
    failed: bool,
    /// Where it is counted: the key's Redis prefix, the route's name (for
    /// its caps) and each check's bucket, to give it back at shutdown.
    prefix: String,
    route_name: String,
    buckets: Vec<u64>,
}

impl Lease {
    fn valid(&self, checks: &[Check], now_ms: u64) -> bool {
        now_ms < self.until_ms && self.checks[..] == *checks
    }
}

#[derive(Default)]
struct Entry {
    lease: Mutex<Lease>,
    /// Told when an ask ends (granted, refused or failed).
    asked: Arc<Notify>,
}

/// Every lease of one gateway.
pub struct Leases {
    max: u64,
    map: papaya::HashMap<(Uuid, RouteId), Arc<Entry>>,
}

/// What a request that found no admission in the lease does.
pub enum Ask {
    /// Asks the script for one: its own.
    One,
    /// Asks for a lease; others wait for it meanwhile.
    Lease(Asking),
    /// Waits for the ask in flight, then takes from the lease or asks for one.
    Wait(OwnedNotified),
}

impl Ask {
    /// Admissions to ask the script for.
    pub fn n(&self) -> u64 {
        match self {
            Ask::Lease(a) => a.n,
            Ask::One | Ask::Wait(_) => 1,
        }
    }
}

/// The one ask in flight for a key and route. Dropped (its reply kept, or
/// its call failed or abandoned), it lets the next request ask and wakes
/// those waiting.
pub struct Asking {
    n: u64,
    entry: Arc<Entry>,
    /// Redis answered (granted or refused).
    answered: bool,
    /// The key's Redis prefix and the route's name, see [`Asking::at`].
    at: Option<(String, String)>,
}

/// Admissions a gateway held unused, and the counters they are counted in.
pub struct Unused {
    pub keys: Vec<String>,
    pub n: u64,
}

impl Asking {
    /// Where the grant is counted in Redis (kept with a new lease).
    pub fn at(mut self, prefix: &str, route_name: &str) -> Asking {
        self.at = Some((prefix.to_owned(), route_name.to_owned()));
        self
    }

    /// Redis refused it: nothing to keep, but it was answered.
    pub fn refused(mut self) {
        self.answered = true;
    }

    /// Keeps what Redis granted beyond the request itself: `counts` as Redis
    /// had them before it, `granted` (≥ 1) counted for this gateway.
    pub fn keep(
        mut self,
        checks: &[Check],
        spans: &[Span],
        counts: &[Counts],
        granted: u64,
        now_ms: u64,
    ) {
        // Counted in buckets that have ended (a slow reply): nothing to keep.
        let until_ms = (spans.iter())
            .map(|s| s.bucket.start_ms + s.bucket.len_ms)
            .min()
            .unwrap_or(0);
        self.answered = true;
        let mut lease = self.entry.lease.lock();
        lease.last_grant = granted;
        if until_ms <= now_ms {
            return;
        }
        let held = match lease.valid(checks, now_ms) {
            true if lease.until_ms == until_ms => lease.left,
            // A lease of other buckets that is still running (cannot happen
            // for buckets that contain `now_ms`): it stays, this grant is unused.
            true => return,
            // None, used up in an ended bucket, or of another plan: replaced.
            false => 0,
        };
        if held == 0 && granted <= 1 {
            return;
        }
        lease.seen = (counts.iter())
            .map(|c| Counts {
                curr: c.curr.saturating_sub(held) + 1,
                prev: c.prev,
            })
            .collect();
        lease.left = held + granted - 1;
        if held == 0 {
            lease.checks = checks.to_vec();
            lease.until_ms = until_ms;
            lease.buckets = spans.iter().map(|s| s.bucket.index).collect();
            (lease.prefix, lease.route_name) = self.at.take().unwrap_or_default();
        }
    }
}

impl Drop for Asking {
    fn drop(&mut self) {
        {
            let mut lease = self.entry.lease.lock();
            lease.asking = false;
            lease.failed = !self.answered;
        }
        self.entry.asked.notify_waiters();
    }
}

impl Leases {
    /// `max`: `ratelimit.lease`; 1 turns leases off.
    pub fn new(max: u64) -> Leases {
        Leases {
            max: max.max(1),
            map: papaya::HashMap::new(),
        }
    }

    pub fn enabled(&self) -> bool {
        self.max > 1
    }

    /// Admits one request from the lease of `id` on `route`, if it holds one
    /// for these checks in these buckets: the verdict, with the windows as
    /// this gateway sees them.
    pub fn take(
        &self,
        id: Uuid,
        route: RouteId,
        checks: &[Check],
        spans: &[Span],
        now_ms: u64,
    ) -> Option<Verdict> {
        let map = self.map.pin();
        let mut lease = map.get(&(id, route))?.lease.lock();
        if lease.left == 0 || !lease.valid(checks, now_ms) {
            return None;
        }
        let windows = statuses(checks, spans, &lease.seen, true);
        lease.left -= 1;
        lease.seen.iter_mut().for_each(|c| c.curr += 1);
        Some(Verdict {
            allowed: true,
            windows,
            rejected_by: None,
        })
    }

    /// What a request of `id` on `route` that the lease could not admit does:
    /// ask for a lease if no one is; else wait for that ask if the last one
    /// was granted more than one; else ask for one.
    pub fn ask(&self, id: Uuid, route: RouteId) -> Ask {
        if !self.enabled() {
            return Ask::One;
        }
        let entry = self
            .map
            .pin()
            .get_or_insert_with((id, route), Arc::default)
            .clone();
        let mut lease = entry.lease.lock();
        if !lease.asking {
            lease.asking = true;
            drop(lease);
            return Ask::Lease(Asking {
                n: self.max,
                entry,
                answered: false,
                at: None,
            });
        }
        if lease.last_grant > 1 {
            // Created under the lock the asker clears `asking` under: the
            // wake-up cannot be missed.
            return Ask::Wait(entry.asked.clone().notified_owned());
        }
        Ask::One
    }

    /// Whether the last ask for `id` on `route` got no answer from Redis.
    pub fn failed(&self, id: Uuid, route: RouteId) -> bool {
        let map = self.map.pin();
        map.get(&(id, route)).is_some_and(|e| e.lease.lock().failed)
    }

    /// Drops the leases whose buckets ended, unless a request holds one.
    pub fn sweep(&self, now_ms: u64) {
        self.map.pin().retain(|_, e| {
            let lease = e.lease.lock();
            lease.asking || lease.until_ms > now_ms || Arc::strong_count(e) > 1
        });
    }

    /// Takes every admission held unused, with the counters to give it
    /// back to (at shutdown: nothing is admitted after this).
    pub fn drain(&self) -> Vec<Unused> {
        let map = self.map.pin();
        let unused = map.values().filter_map(|e| {
            let mut lease = e.lease.lock();
            let n = std::mem::take(&mut lease.left);
            if n == 0 || lease.prefix.is_empty() {
                return None;
            }
            let (prefix, route) = (&lease.prefix, &lease.route_name);
            let keys = (lease.checks.iter().zip(&lease.buckets))
                .map(|(c, b)| bucket_key(prefix, c.scope, route, c.window, *b))
                .collect();
            Some(Unused { keys, n })
        });
        unused.collect()
    }

    /// Admissions held unused, over every lease.
    #[cfg(test)]
    pub fn held(&self) -> u64 {
        self.map.pin().values().map(|e| e.lease.lock().left).sum()
    }
}

#[cfg(test)]
mod tests;
