//! The rate-limit script: every window of a request (the key's, the route
//! cap or its override, the owner's) and the credit balance of its account,
//! checked first and then counted and debited all together, or not at all.
//! The balance rule is [`crate::credits::cell`]'s, line for line.

use redis::{ErrorKind, RedisError};

use super::BackendError;
use crate::ratelimit::decision::Counts;

/// The script runs a batch of requests in groups (see [`super::batch`]):
/// the requests of a group count the same counters by the same limits.
/// KEYS, per group: per check its current and previous bucket; then the
/// balance (a hash `e`poch, `g`ranted, `s`pent) if the requests have credits.
/// ARGV: the number of groups, then per group: the number of checks, 1/0 for
/// credits; per check, limit, bucket length (ms), the first request's elapsed
/// time in the bucket (ms), sliding (1/0), TTL (ms); the balance's TTL (ms,
/// set when the balance is written whole: created, a new epoch, a larger
/// grant) if credits; the number of requests, and per request its offset
/// from the first's time (ms), then with credits its epoch, granted, reserve
/// (the route's cost) and seed (the ledger's spending, or -1).
/// A group's counters are read once; its requests are decided one after
/// another on what was read plus what the earlier ones added, and each
/// counter is written once at the group's end, before the next group reads
/// (with credits, per request before its debit).
/// Returns one row per request, `{allowed, credit, remaining, curr1, prev1,
/// ...}`: `credit` is 0 (none), 1 (enough), 2 (exhausted) or 3 (missing: call
/// again with a seed); `remaining` is the balance after this request; `{-1}`
/// for a request Redis raised an error on (that request fails alone, or its
/// group, for a counter that is not a number).
pub const SCRIPT: &str = r#"
-- The group's counters (KEYS after kb), as numbers, in one MGET.
local function read(kb, n)
  if n == 0 then return {} end
  local vs = redis.call('MGET', unpack(KEYS, kb + 1, kb + 2 * n))
  for i = 1, 2 * n do
    vs[i] = tonumber(vs[i] or 0) or 0
  end
  return vs
end

-- Adds a group's admitted requests to each current bucket, once (INCR for
-- one: a number argument is a string conversion in Lua); a bucket created
-- here gets its TTL.
local function write(kb, ab, n, added)
  for i = 1, n do
    local k, v = KEYS[kb + 2 * i - 1], nil
    if added == 1 then
      v = redis.call('INCR', k)
    else
      v = redis.call('INCRBY', k, added)
    end
    if v == added then
      redis.call('PEXPIRE', k, ARGV[ab + 2 + (i - 1) * 5 + 5])
    end
  end
end

-- One request of a group (vs: the group's counters as its earlier requests
-- left them, KEYS after kb, the group's ARGV after ab, its own after mb;
-- cell: its balance or nil). Returns its row. A request with a balance is
-- counted in its windows here, before it is debited (a window Redis refuses
-- must not leave a debit behind); the caller counts the others' windows.
local function one(vs, kb, ab, n, cell, mb)
  local d = tonumber(ARGV[mb + 1])
  local out = {1, 0, 0}
  for i = 1, n do
    local a = ab + 2 + (i - 1) * 5
    local c = vs[2 * i - 1]
    local p = 0
    if ARGV[a + 4] == '1' then p = vs[2 * i] end
    out[2 * i + 2] = c
    out[2 * i + 3] = p
    local len = tonumber(ARGV[a + 2])
    local est = p * ((len - (tonumber(ARGV[a + 3]) + d)) / len) + c
    if est + 1 > tonumber(ARGV[a + 1]) then out[1] = 0 end
  end
  if not cell then return out end
  local b = mb + 1
  local e, g, s
  -- fresh: the balance is written whole (new, a new epoch, a larger grant);
  -- otherwise admitting only adds the cost to what was spent.
  local fresh = false
  local E = tonumber(ARGV[b + 1])
  local G = tonumber(ARGV[b + 2])
  local cur = redis.call('HMGET', cell, 'e', 'g', 's')
  if not cur[1] then
    local seed = tonumber(ARGV[b + 4])
    if seed < 0 then
      out[1] = 0
      out[2] = 3
      return out
    end
    e, g, s, fresh = E, G, seed, true
  else
    e, g, s = tonumber(cur[1]), tonumber(cur[2]), tonumber(cur[3])
    if E > e then
      e, g, s, fresh = E, G, 0, true
    elseif E == e and G > g then
      g, fresh = G, true
    end
  end
  local need = math.max(tonumber(ARGV[b + 3]), 1)
  out[3] = g - s
  if g - s < need then
    out[1] = 0
    out[2] = 2
  else
    out[2] = 1
  end
  if out[1] == 1 then
    write(kb, ab, n, 1)
    local cost = tonumber(ARGV[b + 3])
    s = s + cost
    if fresh then
      redis.call('HSET', cell, 'e', string.format('%.0f', e), 'g', string.format('%.0f', g),
        's', string.format('%.0f', s))
      redis.call('PEXPIRE', cell, ARGV[ab + 3 + 5 * n])
    elseif cost ~= 0 then
      redis.call('HINCRBY', cell, 's', cost)
    end
    out[3] = g - s
  end
  return out
end

-- Group after group: each reads its counters after the groups before it
-- wrote theirs, so groups that share one (an owner's window) see each other.
local rows, kb, ab = {}, 0, 1
for _ = 1, tonumber(ARGV[1]) do
  local n = tonumber(ARGV[ab + 1])
  local cell, c = nil, 0
  if ARGV[ab + 2] == '1' then cell, c = KEYS[kb + 2 * n + 1], 1 end
  local mc = ab + 3 + 5 * n + c
  local m, step = tonumber(ARGV[mc]), 1 + 4 * c
  local vs = read(kb, n)
  local first, added = #rows + 1, 0
  for j = 1, m do
    -- A request whose balance Redis refuses (a wrong type, a broken
    -- balance) fails alone, as {-1}: the others are decided all the same.
    local ok, row = pcall(one, vs, kb, ab, n, cell, mc + (j - 1) * step)
    if not ok then row = {-1} end
    rows[first + j - 1] = row
    if row[1] == 1 then
      added = added + 1
      for i = 1, n do
        vs[2 * i - 1] = vs[2 * i - 1] + 1
      end
    end
  end
  -- A counter Redis refuses (not a number) fails the requests it counted.
  if added > 0 and not cell and not pcall(write, kb, ab, n, added) then
    for r = first, #rows do
      if rows[r][1] == 1 then rows[r] = {-1} end
    end
  end
  kb, ab = kb + 2 * n + c, mc + m * step
end
return rows
"#;

/// KEYS: a balance. ARGV: the epoch it was charged in, the correction.
/// Adds the correction to `s` if the balance is still in that epoch.
pub const SETTLE: &str = r#"
local e = redis.call('HGET', KEYS[1], 'e')
if e and tonumber(e) == tonumber(ARGV[1]) then
  redis.call('HINCRBY', KEYS[1], 's', ARGV[2])
  return {1}
end
return {0}
"#;

/// What the balance said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreditReply {
    None,
    Enough,
    Exhausted,
    NeedSeed,
}

/// The script's reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// Admitted, counted and debited.
    pub allowed: bool,
    pub credit: CreditReply,
    /// The balance after this request.
    pub remaining: i64,
    /// Each window's counts before this request.
    pub counts: Vec<Counts>,
}

pub fn parse(out: &[i64], checks: usize) -> Result<Reply, BackendError> {
    let bad = || {
        BackendError::Redis(RedisError::from((
            ErrorKind::Parse,
            "unexpected rate-limit script reply",
        )))
    };
    let credit = match out.get(1) {
        Some(0) => CreditReply::None,
        Some(1) => CreditReply::Enough,
        Some(2) => CreditReply::Exhausted,
        Some(3) => {
            return Ok(Reply {
                allowed: false,
                credit: CreditReply::NeedSeed,
                remaining: 0,
                counts: Vec::new(),
            });
        }
        _ => return Err(bad()),
    };
    if out.len() != 3 + 2 * checks {
        return Err(bad());
    }
    let counts = out[3..]
        .chunks(2)
        .map(|p| Counts {
            curr: p[0].max(0) as u64,
            prev: p[1].max(0) as u64,
        })
        .collect();
    Ok(Reply {
        allowed: out[0] == 1,
        credit,
        remaining: out[2],
        counts,
    })
}
