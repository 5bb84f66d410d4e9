//! The requests of one script call, grouped by the counters they count.
//! Requests of one key on one route in the same buckets (a busy key's, in
//! one round trip) form one group: its keys and window arguments go to
//! Redis once, and each request adds only its time in the group's buckets
//! (and its credit ask). The script reads a group's counters once, decides
//! its requests one after another on what it read plus what the group's
//! earlier requests added, and then writes each counter once (see
//! [`super::script`]): each request is decided exactly as if it had been
//! sent alone, and Redis parses, reads and writes per group, not per request.

use redis::{Cmd, ErrorKind, RedisError, ServerErrorKind};

use super::keys::BucketKey;
use super::target::Conn;
use super::{BALANCE_TTL_MS, Call, bucket_ttl_ms};
use crate::credits::cell::Ask;
use crate::ratelimit::decision::{Check, Scope, Span};

/// How many of the latest groups a request is compared with: a batch of
/// many distinct keys costs at most this many comparisons per request.
const GROUP_SCAN: usize = 8;

/// Each sent request's row of the script's reply, with the index it was
/// pushed at.
pub(super) type Rows = Result<Vec<(usize, Vec<i64>)>, RedisError>;

/// Requests that count the same counters by the same rules.
struct Group {
    key_prefix: String,
    owner_prefix: Option<String>,
    route_name: String,
    /// The balance, when the requests have credits.
    cell: Option<String>,
    checks: Vec<Check>,
    /// The first request's spans: the group's buckets, and the first's
    /// elapsed time in them, which the others' offsets are from.
    spans: Vec<Span>,
    members: Vec<Member>,
}

struct Member {
    /// Where the request was pushed, among the batch's requests.
    request: usize,
    /// Its time less the group's first request's, in ms (the same in every
    /// window: the buckets are the same).
    offset: i64,
    /// How many admissions it asks for (1, or a lease).
    ask: u64,
    /// Its credit ask and seed (the ledger's spending, or -1).
    credit: Option<(Ask, i64)>,
}

impl Group {
    fn new(call: &Call<'_>) -> Group {
        Group {
            key_prefix: call.key_prefix.to_owned(),
            owner_prefix: call.owner_prefix.map(str::to_owned),
            route_name: call.route_name.to_owned(),
            cell: call.credit.as_ref().map(|c| c.cell.to_owned()),
            checks: call.checks.to_vec(),
            spans: call.spans.to_vec(),
            members: Vec::new(),
        }
    }

    /// The request's offset in this group's time, if it counts the same
    /// counters by the same limits.
    fn offset_of(&self, call: &Call<'_>) -> Option<i64> {
        let same = self.key_prefix == call.key_prefix
            && self.owner_prefix.as_deref() == call.owner_prefix
            && self.route_name == call.route_name
            && self.cell.as_deref() == call.credit.as_ref().map(|c| c.cell)
            && self.checks[..] == *call.checks
            && self.spans.len() == call.spans.len()
            && (self.spans.iter().zip(call.spans))
                .all(|(a, b)| a.bucket == b.bucket && a.sliding == b.sliding);
        let at = |s: Option<&Span>| s.map_or(0, |s| s.elapsed_ms as i64);
        same.then(|| at(call.spans.first()) - at(self.spans.first()))
    }

    fn add(&mut self, request: usize, offset: i64, call: &Call<'_>) {
        self.members.push(Member {
            request,
            offset,
            ask: call.ask.max(1),
            credit: call.credit.as_ref().map(|c| (c.ask, c.seed.unwrap_or(-1))),
        });
    }

    fn nkeys(&self) -> usize {
        2 * self.checks.len() + usize::from(self.cell.is_some())
    }

    /// KEYS: per check its current and previous bucket; then the balance.
    fn write_keys(&self, cmd: &mut Cmd) {
        for (c, s) in self.checks.iter().zip(&self.spans) {
            let prefix = match (c.scope, &self.owner_prefix) {
                (Scope::Owner, Some(p)) => p,
                _ => &self.key_prefix,
            };
            for bucket in [s.bucket.index, s.bucket.index.wrapping_sub(1)] {
                cmd.arg(BucketKey {
                    prefix,
                    scope: c.scope,
                    route_name: &self.route_name,
                    window: c.window,
                    bucket,
                });
            }
        }
        if let Some(cell) = &self.cell {
            cmd.arg(cell.as_str());
        }
    }

    /// ARGV as the script reads them, for the members in `sent`.
    fn write_args(&self, cmd: &mut Cmd, sent: &impl Fn(&Member) -> bool) {
        cmd.arg(self.checks.len())
            .arg(u8::from(self.cell.is_some()));
        for (c, s) in self.checks.iter().zip(&self.spans) {
            cmd.arg(c.limit)
                .arg(s.bucket.len_ms)
                .arg(s.elapsed_ms)
                .arg(u8::from(s.sliding))
                .arg(bucket_ttl_ms(s));
        }
        if self.cell.is_some() {
            cmd.arg(BALANCE_TTL_MS);
        }
        cmd.arg(self.members.iter().filter(|m| sent(m)).count());
        for m in self.members.iter().filter(|m| sent(m)) {
            cmd.arg(m.offset).arg(m.ask);
            if let Some((ask, seed)) = &m.credit {
                cmd.arg(ask.epoch)
                    .arg(ask.granted)
                    .arg(ask.reserve)
                    .arg(*seed);
            }
        }
    }
}

/// The requests that go to Redis in one call, by group.
#[derive(Default)]
pub(super) struct Batch {
    groups: Vec<Group>,
    len: usize,
}

impl Batch {
    /// Adds one request: to a recent group that counts what it counts, or
    /// as a new group.
    pub fn push(&mut self, call: &Call<'_>) {
        let request = self.len;
        self.len += 1;
        let found = self
            .groups
            .iter_mut()
            .rev()
            .take(GROUP_SCAN)
            .find_map(|g| g.offset_of(call).map(|offset| (g, offset)));
        match found {
            Some((g, offset)) => g.add(request, offset, call),
            None => {
                let mut g = Group::new(call);
                g.add(request, 0, call);
                self.groups.push(g);
            }
        }
    }

    /// `EVALSHA <sha> <nkeys> KEYS... <groups> ARGV...` of the requests
    /// marked in `keep` (a group with none of them is left out), and the
    /// requests in the order of the script's rows.
    fn command(&self, sha: &str, keep: &[bool]) -> (Cmd, Vec<usize>) {
        let sent = |m: &Member| keep.get(m.request).copied().unwrap_or(false);
        let live: Vec<&Group> = (self.groups.iter())
            .filter(|g| g.members.iter().any(sent))
            .collect();
        let nkeys: usize = live.iter().map(|g| g.nkeys()).sum();
        let mut cmd = Cmd::with_capacity(8 + nkeys + 8 * self.len, 64 + 48 * nkeys);
        cmd.arg("EVALSHA").arg(sha).arg(nkeys);
        live.iter().for_each(|g| g.write_keys(&mut cmd));
        cmd.arg(live.len());
        live.iter().for_each(|g| g.write_args(&mut cmd, &sent));
        let order = (live.iter())
            .flat_map(|g| g.members.iter().filter(|m| sent(m)))
            .map(|m| m.request)
            .collect();
        (cmd, order)
    }

    /// Sends the requests marked in `keep`; if Redis lost the script (a
    /// restart, `SCRIPT FLUSH`, a failover), loads it and sends them again (a
    /// script that was not found ran nothing). One row per request sent.
    pub async fn send(&self, conn: &mut Conn, script: &redis::Script, keep: &[bool]) -> Rows {
        let (cmd, order) = self.command(script.get_hash(), keep);
        let rows: Vec<Vec<i64>> = match cmd.query_async(conn).await {
            Err(e) if e.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                script.load_async(conn).await?;
                cmd.query_async(conn).await?
            }
            r => r?,
        };
        if rows.len() != order.len() {
            return Err(RedisError::from((
                ErrorKind::Parse,
                "rate-limit script: one reply per request expected",
            )));
        }
        Ok(order.into_iter().zip(rows).collect())
    }
}
