//! The batched Redis mode (`ratelimit.mode = "batched"`): each instance counts
//! locally and, every `ratelimit.batch_interval`, adds what it counted to Redis
//! and reads back the totals of every instance. No Redis call on the request
//! path, except the first use of a key on an instance, which reads its windows
//! first so that an instance never starts from zero.
//!
//! Over-admission bound: an instance decides from the totals it read at the
//! last flush plus its own counts, so in the worst case every other instance
//! admits up to what it saw as remaining during one interval: at most
//! `(instances − 1) × (requests per key per instance per interval)` beyond the
//! limit. With one instance, or at a rate below one request per interval per
//! instance, batched mode is as exact as exact mode.

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use uuid::Uuid;

use super::decision::{Check, Counts, Scope, Span, Verdict, evaluate};
use super::redis::{BackendError, RedisBackend, bucket_pair, bucket_ttl_ms, key_prefix};
use super::window::Window;

/// KEYS: per slot, its current and previous bucket. ARGV: per slot, the count
/// to add, the TTL (ms), sliding (1/0). Returns `{curr1, prev1, ...}` after.
const FLUSH_SCRIPT: &str = r#"
local out = {}
for i = 1, #KEYS / 2 do
  local a = (i - 1) * 3
  local d = tonumber(ARGV[a + 1])
  local c
  if d > 0 then
    c = redis.call('INCRBY', KEYS[2 * i - 1], d)
    if c == d then redis.call('PEXPIRE', KEYS[2 * i - 1], ARGV[a + 2]) end
  else
    c = tonumber(redis.call('GET', KEYS[2 * i - 1]) or 0) or 0
  end
  local p = 0
  if ARGV[a + 3] == '1' then p = tonumber(redis.call('GET', KEYS[2 * i]) or 0) or 0 end
  out[2 * i - 1] = c
  out[2 * i] = p
end
return out
"#;

struct Slot {
    scope: Scope,
    window: Window,
    route: Arc<str>,
    span: Span,
    curr: u64,
    prev: u64,
    /// Counted here, not yet added to Redis.
    pending: u64,
    /// Pending counts of a bucket that ended before they were flushed.
    carry: Option<(u64, u64)>,
    synced: bool,
}

impl Slot {
    /// Moves the slot to `span`'s bucket.
    fn roll(&mut self, span: &Span) {
        let b = span.bucket.index;
        if b == self.span.bucket.index {
            self.span = *span;
            return;
        }
        if self.pending > 0 {
            self.carry = Some((self.span.bucket.index, self.pending));
        }
        self.prev = if b == self.span.bucket.index + 1 {
            self.curr
        } else {
            0
        };
        self.curr = 0;
        self.pending = 0;
        self.span = *span;
    }
}

struct KeyState {
    slots: Vec<Slot>,
    /// Used since the last flush.
    active: bool,
    last_used: Instant,
}

impl Default for KeyState {
    fn default() -> Self {
        KeyState {
            slots: Vec::new(),
            active: false,
            last_used: Instant::now(),
        }
    }
}

/// Keys unused this long are forgotten (their counts live on in Redis).
const IDLE: Duration = Duration::from_secs(120);

/// One key's state, and a lock that lets one flush at a time be in flight for
/// it: two flushes on different connections could run in Redis in the other
/// order, and the one carrying nothing would report a total without the
/// other's counts.
#[derive(Default)]
struct Key {
    state: Mutex<KeyState>,
    flushing: tokio::sync::Mutex<()>,
}

pub struct BatchedLimiter {
    redis: Arc<RedisBackend>,
    script: redis::Script,
    keys: papaya::HashMap<Uuid, Arc<Key>>,
}

struct FlushItem {
    keys: Vec<String>,
    args: Vec<u64>,
    /// Which slot each pair of results belongs to, and what was sent.
    slots: Vec<(usize, u64, u64)>,
}

impl BatchedLimiter {
    pub fn new(redis: Arc<RedisBackend>) -> BatchedLimiter {
        BatchedLimiter {
            redis,
            script: redis::Script::new(FLUSH_SCRIPT),
            keys: papaya::HashMap::new(),
        }
    }

    fn key(&self, id: Uuid) -> Arc<Key> {
        self.keys
            .pin()
            .get_or_insert_with(id, Default::default)
            .clone()
    }

    fn slot_index(k: &mut KeyState, c: &Check, span: &Span, route: &str) -> usize {
        match k
            .slots
            .iter()
            .position(|s| s.scope == c.scope && s.window == c.window)
        {
            Some(i) => i,
            None => {
                k.slots.push(Slot {
                    scope: c.scope,
                    window: c.window,
                    route: route.into(),
                    span: *span,
                    curr: 0,
                    prev: 0,
                    pending: 0,
                    carry: None,
                    synced: false,
                });
                k.slots.len() - 1
            }
        }
    }

    /// Decides from local state and counts the request if admitted. `None`: a
    /// window of this key has never been read from Redis here (call
    /// [`Self::sync_key`] first).
    pub fn try_check(
        &self,
        id: Uuid,
        checks: &[Check],
        spans: &[Span],
        route: &str,
    ) -> Option<Verdict> {
        let key = self.key(id);
        let mut k = key.state.lock();
        let mut idx = Vec::with_capacity(checks.len());
        for (c, s) in checks.iter().zip(spans) {
            let i = Self::slot_index(&mut k, c, s, route);
            k.slots[i].roll(s);
            if !k.slots[i].synced {
                return None;
            }
            idx.push(i);
        }
        let counts: Vec<Counts> = idx
            .iter()
            .map(|&i| Counts {
                curr: k.slots[i].curr,
                prev: k.slots[i].prev,
            })
            .collect();
        let verdict = evaluate(checks, spans, &counts);
        if verdict.allowed {
            for &i in &idx {
                k.slots[i].curr += 1;
                k.slots[i].pending += 1;
            }
        }
        k.active = true;
        k.last_used = Instant::now();
        Some(verdict)
    }

    /// Reads (and flushes) one key's windows now, unless another caller just did.
    pub async fn sync_key(
        &self,
        id: Uuid,
        checks: &[Check],
        spans: &[Span],
        route: &str,
        timeout: Duration,
    ) -> Result<(), BackendError> {
        let key = self.key(id);
        let _one = key.flushing.lock().await;
        let synced = {
            let mut k = key.state.lock();
            let mut all = true;
            for (c, s) in checks.iter().zip(spans) {
                let i = Self::slot_index(&mut k, c, s, route);
                k.slots[i].roll(s);
                all &= k.slots[i].synced;
            }
            all
        };
        if synced {
            return Ok(());
        }
        self.flush_locked(id, &key, timeout).await
    }

    /// Adds every key's pending counts to Redis and reads the totals back.
    pub async fn flush(&self, timeout: Duration) -> Result<usize, BackendError> {
        let active: Vec<(Uuid, Arc<Key>)> = self
            .keys
            .pin()
            .iter()
            .filter(|(_, k)| k.state.lock().active)
            .map(|(id, k)| (*id, k.clone()))
            .collect();
        let n = active.len();
        let results = futures::future::join_all(active.iter().map(|(id, k)| async move {
            let _one = k.flushing.lock().await;
            self.flush_locked(*id, k, timeout).await
        }))
        .await;
        results
            .into_iter()
            .find(Result::is_err)
            .unwrap_or(Ok(()))
            .map(|_| n)
    }

    fn prepare(id: Uuid, k: &mut KeyState) -> FlushItem {
        let prefix = key_prefix(id);
        let mut item = FlushItem {
            keys: Vec::new(),
            args: Vec::new(),
            slots: Vec::new(),
        };
        for (i, s) in k.slots.iter_mut().enumerate() {
            let ttl = bucket_ttl_ms(&s.span);
            if let Some((bucket, delta)) = s.carry.take() {
                item.keys
                    .extend(bucket_pair(&prefix, s.scope, &s.route, s.window, bucket));
                item.args.extend([delta, ttl, 0]);
                item.slots.push((usize::MAX, 0, 0));
            }
            item.keys.extend(bucket_pair(
                &prefix,
                s.scope,
                &s.route,
                s.window,
                s.span.bucket.index,
            ));
            item.args
                .extend([s.pending, ttl, u64::from(s.span.sliding)]);
            item.slots.push((i, s.span.bucket.index, s.pending));
            s.pending = 0;
        }
        k.active = false;
        item
    }

    /// Flushes one key; the caller holds its `flushing` lock.
    async fn flush_locked(
        &self,
        id: Uuid,
        key: &Key,
        timeout: Duration,
    ) -> Result<(), BackendError> {
        let item = Self::prepare(id, &mut key.state.lock());
        if item.slots.is_empty() {
            return Ok(());
        }
        let mut inv = self.script.prepare_invoke();
        for k in &item.keys {
            inv.key(k);
        }
        for a in &item.args {
            inv.arg(*a);
        }
        let result = match self.redis.invoke(&inv, timeout).await {
            Ok(out) if out.len() == 2 * item.slots.len() => Ok(out),
            Ok(_) => Err(BackendError::Redis(redis::RedisError::from((
                redis::ErrorKind::Parse,
                "unexpected flush reply",
            )))),
            Err(e) => Err(e),
        };
        let mut k = key.state.lock();
        match result {
            Ok(out) => {
                for (pair, (i, bucket, _)) in out.chunks(2).zip(&item.slots) {
                    let Some(s) = k.slots.get_mut(*i) else {
                        continue;
                    };
                    if s.span.bucket.index != *bucket {
                        continue; // rolled meanwhile; the next flush reads it again
                    }
                    // The totals include what we sent; add what we counted since.
                    s.curr = pair[0].max(0) as u64 + s.pending;
                    s.prev = pair[1].max(0) as u64;
                    s.synced = true;
                }
                Ok(())
            }
            Err(e) => {
                // Not counted in Redis: send it again next time.
                for (i, bucket, sent) in &item.slots {
                    if let Some(s) = k.slots.get_mut(*i) {
                        if s.span.bucket.index == *bucket {
                            s.pending += sent;
                        }
                    }
                }
                k.active = true;
                Err(e)
            }
        }
    }

    /// Forgets keys not used for a while (their counts live in Redis).
    pub fn sweep(&self) {
        self.keys.pin().retain(|_, k| {
            let k = k.state.lock();
            k.last_used.elapsed() < IDLE
                || k.slots.iter().any(|s| s.pending > 0 || s.carry.is_some())
        });
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
