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
/// from the first's time (ms), how many admissions it asks for (1, or a
/// lease: [`crate::ratelimit::lease`]), then with credits its epoch, granted,
/// reserve (the route's cost) and seed (the ledger's spending, or -1).
/// A group's counters are read once; its requests are decided one after
/// another on what was read plus what the earlier ones added, and each
/// counter and the balance are written once at the group's end (windows
/// first: a counter Redis refuses leaves no debit), before the next group
/// reads.
/// Returns one row per request, `{granted, credit, remaining, curr1, prev1,
/// ...}`: `granted` is 0 (refused) or the admissions counted for it (1, or up
/// to its ask, at most a sixteenth of any window's room, and for a day or
/// longer 1/1024 of its limit); `credit` is 0
/// (none), 1 (enough), 2 (exhausted) or 3 (missing: call
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

-- The group's balance as a table {e, g, s}, false if missing, or the
-- error Redis raised on it (each of the group's requests then fails).
local function balance(cell)
  local ok, cur = pcall(redis.call, 'HMGET', cell, 'e', 'g', 's')
  if not ok then return 'the balance is not a hash' end
  if not cur[1] then return false end
  return {tonumber(cur[1]), tonumber(cur[2]), tonumber(cur[3])}
end

-- A request's credit ask (ARGV after mb: epoch, granted, reserve, seed) on
-- the balance as the group's earlier requests left it. Sets the row's
-- credit and remaining, refuses it when the balance cannot pay; returns
-- the balance after it if it is admitted, and whether that balance is
-- written whole (new, a new epoch, a larger grant).
local function pay(bal, mb, out)
  if type(bal) == 'string' then error(bal) end
  local E, G = tonumber(ARGV[mb + 2]), tonumber(ARGV[mb + 3])
  local cost = tonumber(ARGV[mb + 4])
  local e, g, s, fresh
  if not bal then
    local seed = tonumber(ARGV[mb + 5])
    if seed < 0 then
      out[1], out[2] = 0, 3
      return nil
    end
    e, g, s, fresh = E, G, seed, true
  else
    e, g, s, fresh = bal[1], bal[2], bal[3], false
    if E > e then
      e, g, s, fresh = E, G, 0, true
    elseif E == e and G > g then
      g, fresh = G, true
    end
  end
  out[3] = g - s
  if g - s < math.max(cost, 1) then
    out[1], out[2] = 0, 2
    return nil
  end
  out[2] = 1
  if out[1] == 0 then return nil end
  out[3] = g - s - cost
  return {e, g, s + cost}, fresh
end

-- One request of a group (vs: the group's counters as its earlier requests
-- left them, the group's ARGV after ab, its own after mb; bal: the balance
-- as they left it, nil without credits). Returns its row, and with credits
-- the balance after it if admitted and whether that is written whole.
local function one(vs, ab, n, bal, mb)
  local d = tonumber(ARGV[mb + 1])
  local out = {tonumber(ARGV[mb + 2]), 0, 0}
  for i = 1, n do
    local a = ab + 2 + (i - 1) * 5
    local c = vs[2 * i - 1]
    local p = 0
    if ARGV[a + 4] == '1' then p = vs[2 * i] end
    out[2 * i + 2] = c
    out[2 * i + 3] = p
    local len = tonumber(ARGV[a + 2])
    local est = p * ((len - (tonumber(ARGV[a + 3]) + d)) / len) + c
    local limit = tonumber(ARGV[a + 1])
    if est + 1 > limit then
      out[1] = 0
    elseif out[1] > 1 then
      -- A lease: at most a sixteenth of the room, at least one; of a day or
      -- longer (a quota a lost lease would dent until it ends) at most
      -- 1/1024 of the limit.
      local share = math.floor((limit - est) / 16)
      if len >= 86400000 then share = math.min(share, math.floor(limit / 1024)) end
      out[1] = math.min(out[1], math.max(1, share))
    end
  end
  if bal == nil then return out end
  return out, pay(bal, mb + 1, out)
end

-- Writes a group's debits, once: the balance whole if it was new, in a new
-- epoch or granted more, else what was spent (s0: `s` as read).
local function debit(cell, bal, fresh, s0, ttl)
  if fresh then
    redis.call('HSET', cell, 'e', string.format('%.0f', bal[1]),
      'g', string.format('%.0f', bal[2]), 's', string.format('%.0f', bal[3]))
    redis.call('PEXPIRE', cell, ttl)
  elseif bal[3] ~= s0 then
    redis.call('HINCRBY', cell, 's', string.format('%.0f', bal[3] - s0))
  end
end

-- Group after group: each reads its counters after the groups before it
-- wrote theirs, so groups that share one (an owner's window) see each other.
local rows, kb, ab = {}, 0, 1
for _ = 1, tonumber(ARGV[1]) do
  local n = tonumber(ARGV[ab + 1])
  local cell, c = nil, 0
  if ARGV[ab + 2] == '1' then cell, c = KEYS[kb + 2 * n + 1], 1 end
  local mc = ab + 3 + 5 * n + c
  local m, step = tonumber(ARGV[mc]), 2 + 4 * c
  local vs, bal = read(kb, n), nil
  if cell then bal = balance(cell) end
  local s0, fresh = type(bal) == 'table' and bal[3], false
  local first, added = #rows + 1, 0
  for j = 1, m do
    -- A request Redis refuses (its balance not a hash, not numbers) fails
    -- alone, as {-1}: the others are decided all the same.
    local ok, row, after, whole = pcall(one, vs, ab, n, bal, mc + (j - 1) * step)
    if not ok then row = {-1} end
    rows[first + j - 1] = row
    if row[1] >= 1 then
      added = added + row[1]
      for i = 1, n do
        vs[2 * i - 1] = vs[2 * i - 1] + row[1]
      end
      if after then bal, fresh = after, fresh or whole end
    end
  end
  -- Windows first, then the balance: a counter Redis refuses (not a
  -- number) fails the requests it counted and debits nothing.
  if added > 0 then
    local ok = pcall(write, kb, ab, n, added)
    if ok and cell then ok = pcall(debit, cell, bal, fresh, s0, ARGV[ab + 3 + 5 * n]) end
    if not ok then
      for r = first, #rows do
        if rows[r][1] >= 1 then rows[r] = {-1} end
      end
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

/// KEYS: the counters of one lease (current buckets). ARGV: the admissions
/// it held unused. Takes them off each counter that still has them (one
/// whose bucket expired is left alone); returns how many counters.
pub const GIVE_BACK: &str = r#"
local n, given = tonumber(ARGV[1]), 0
for i = 1, #KEYS do
  local v = tonumber(redis.call('GET', KEYS[i]) or 0) or 0
  if v >= n then
    redis.call('DECRBY', KEYS[i], n)
    given = given + 1
  end
end
return given
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
    /// Admissions counted for it: 1, or more for a lease; 0 when refused.
    pub granted: u64,
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
                granted: 0,
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
        allowed: out[0] >= 1,
        granted: out[0].max(0) as u64,
        credit,
        remaining: out[2],
        counts,
    })
}
