//! The rate-limit script: every window of a request (the key's, the route
//! cap or its override, the owner's) and the credit balance of its account,
//! checked first and then counted and debited all together, or not at all.
//! The balance rule is [`crate::credits::cell`]'s, line for line.

use redis::{ErrorKind, RedisError};

use super::BackendError;
use crate::ratelimit::decision::Counts;

/// The script runs a batch of requests, one after another (see
/// [`super::combine`]). Per request, KEYS: per check its current and previous
/// bucket; then the balance (a hash `e`poch, `g`ranted, `s`pent) if the
/// request has credits. ARGV: the number of requests, then per request the
/// number of checks, 1/0 for credits; per check, limit, bucket length (ms),
/// elapsed in bucket (ms), sliding (1/0), TTL (ms); then epoch, granted,
/// reserve (the route's cost), seed (the ledger's spending, or -1), the
/// balance's TTL (ms, set when the balance is written whole: created, a new
/// epoch, a larger grant).
/// Returns one row per request, `{allowed, credit, remaining, curr1, prev1,
/// ...}`: `credit` is 0 (none), 1 (enough), 2 (exhausted) or 3 (missing: call
/// again with a seed); `remaining` is the balance after this request; `{-1}`
/// for a request Redis raised an error on (that request fails alone).
pub const SCRIPT: &str = r#"
-- One request; its KEYS start after kb, its ARGV after ab. Returns its row.
local function one(kb, ab)
  local n = tonumber(ARGV[ab + 1])
  local credit = ARGV[ab + 2] == '1'
  local out = {1, 0, 0}
  if n > 0 then
    local vals = redis.call('MGET', unpack(KEYS, kb + 1, kb + 2 * n))
    for i = 1, n do
      local a = ab + 2 + (i - 1) * 5
      local c = tonumber(vals[2 * i - 1] or 0) or 0
      local p = 0
      if ARGV[a + 4] == '1' then p = tonumber(vals[2 * i] or 0) or 0 end
      out[2 * i + 2] = c
      out[2 * i + 3] = p
      local len = tonumber(ARGV[a + 2])
      local est = p * ((len - tonumber(ARGV[a + 3])) / len) + c
      if est + 1 > tonumber(ARGV[a + 1]) then out[1] = 0 end
    end
  end
  local ck, e, g, s, b
  -- fresh: the balance is written whole (new, a new epoch, a larger grant);
  -- otherwise admitting only adds the cost to what was spent.
  local fresh = false
  if credit then
    b = ab + 2 + n * 5
    ck = KEYS[kb + 2 * n + 1]
    local E = tonumber(ARGV[b + 1])
    local G = tonumber(ARGV[b + 2])
    local cur = redis.call('HMGET', ck, 'e', 'g', 's')
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
  end
  if out[1] == 1 then
    for i = 1, n do
      local k = KEYS[kb + 2 * i - 1]
      local v = redis.call('INCR', k)
      if v == 1 then redis.call('PEXPIRE', k, ARGV[ab + 2 + (i - 1) * 5 + 5]) end
    end
    if credit then
      local cost = tonumber(ARGV[b + 3])
      s = s + cost
      if fresh then
        redis.call('HSET', ck, 'e', string.format('%.0f', e), 'g', string.format('%.0f', g),
          's', string.format('%.0f', s))
        redis.call('PEXPIRE', ck, ARGV[b + 5])
      elseif cost ~= 0 then
        redis.call('HINCRBY', ck, 's', cost)
      end
      out[3] = g - s
    end
  end
  return out
end
local rows, kb, ab = {}, 0, 1
for r = 1, tonumber(ARGV[1]) do
  local n = tonumber(ARGV[ab + 1])
  local kn, an = 2 * n, 2 + 5 * n
  if ARGV[ab + 2] == '1' then kn, an = kn + 1, an + 5 end
  -- A request whose keys Redis refuses (a wrong type, a broken balance)
  -- fails alone, as {-1}: the others are decided all the same.
  local ok, row = pcall(one, kb, ab)
  if ok then rows[r] = row else rows[r] = {-1} end
  kb, ab = kb + kn, ab + an
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
