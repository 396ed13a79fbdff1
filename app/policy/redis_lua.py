"""Every Lua script of the policy store, built from shared functions (one definition of each rule).

* GCRA (rate limits): ``gcra_check`` / ``gcra_commit`` / ``gcra_adjust`` over a key holding ``tat`` (ms).
* Ledger (budgets): per subject a hash (spent, reserved, counters, alert flags) and a sorted set of
  holds ``rid|amount`` scored by expiry (ms), purged on every use.
* ``RESERVE_ALL`` = requests-per-minute + tokens-per-minute + budget reservation in ONE atomic call
  (all or nothing), and ``SETTLE_ALL`` = token reconcile + spend booking: the request path's only
  two round trips.

Time: ARGV[1] in ms, or "" for Redis's own clock (one clock for every replica).
"""

from __future__ import annotations

_FUNCTIONS = r"""
local W, EPS = 60000.0, 0.000001
local function clock(arg)
  local now = tonumber(arg)
  if not now then local t = redis.call('TIME'); now = t[1] * 1000 + t[2] / 1000 end
  return now
end
-- returns ok, new_tat, remaining, reset_ms, retry_ms
local function gcra_check(key, limit, cost, now)
  local t = W / limit
  local tat = tonumber(redis.call('GET', key) or '0')
  local base = math.max(tat, now)
  local nt = base + cost * t
  local used = nt - now
  if used > W + EPS then
    return false, tat, math.max(math.floor((W - (base - now) + EPS) / t), 0), math.ceil(base - now), used - W
  end
  return true, nt, math.max(math.floor((W - used + EPS) / t), 0), math.ceil(used), 0
end
local function gcra_commit(key, nt, now)
  redis.call('SET', key, string.format('%.3f', nt), 'PX', math.ceil(nt - now) + 1000)
end
local function gcra_adjust(key, limit, delta, now)
  local tat = math.max(tonumber(redis.call('GET', key) or '0'), now) + delta * W / limit
  if tat <= now then redis.call('DEL', key) else gcra_commit(key, tat, now) end
end
local function purge(h, z, now)
  local gone = redis.call('ZRANGEBYSCORE', z, '-inf', now)
  for _, m in ipairs(gone) do
    redis.call('HINCRBY', h, 'reserved', -tonumber(string.match(m, '|(%d+)$')))
  end
  if #gone > 0 then redis.call('ZREMRANGEBYSCORE', z, '-inf', now) end
end
-- budget subjects j = 1..b at KEYS[k0 + 2j - 1], KEYS[k0 + 2j]; limit, ttl at ARGV[a0 + 2j - 1], ARGV[a0 + 2j]
-- only subjects with a limit (>= 0) hold reservations; the others just count usage at settlement
local function ledger_check(k0, a0, b, amount, now)
  for j = 1, b do
    local h, z, limit = KEYS[k0 + 2 * j - 1], KEYS[k0 + 2 * j], tonumber(ARGV[a0 + 2 * j - 1])
    if limit >= 0 then
      purge(h, z, now)
      local v = redis.call('HMGET', h, 'spent', 'reserved')
      local spent, reserved = tonumber(v[1] or '0'), tonumber(v[2] or '0')
      if spent + reserved + amount > limit then return j, spent, reserved end
    end
  end
  return 0, 0, 0
end
local function ledger_commit(k0, a0, b, m, amount, hold, now)
  for j = 1, b do
    local h, z = KEYS[k0 + 2 * j - 1], KEYS[k0 + 2 * j]
    local limit, ttl = tonumber(ARGV[a0 + 2 * j - 1]), tonumber(ARGV[a0 + 2 * j])
    if limit >= 0 then
      redis.call('HINCRBY', h, 'reserved', amount)
      redis.call('ZADD', z, now + hold, m)
      redis.call('EXPIRE', h, ttl)
      redis.call('EXPIRE', z, ttl)
    end
  end
end
-- usage at ARGV[u0 + 1 ..]: member, amount, actual, prompt, completion, savings, n_thresholds, thresholds...
-- returns the index of the first limit/ttl ARGV pair - 1 and the crossed alerts {subject, threshold, spent}*
local function ledger_settle(k0, u0, b, now)
  local m, amount, actual = ARGV[u0 + 1], tonumber(ARGV[u0 + 2]), tonumber(ARGV[u0 + 3])
  local pt, ct, sav, nt = tonumber(ARGV[u0 + 4]), tonumber(ARGV[u0 + 5]), tonumber(ARGV[u0 + 6]), tonumber(ARGV[u0 + 7])
  local a0 = u0 + 7 + nt
  local out = {}
  for j = 1, b do
    local h, z = KEYS[k0 + 2 * j - 1], KEYS[k0 + 2 * j]
    local limit, ttl = tonumber(ARGV[a0 + 2 * j - 1]), tonumber(ARGV[a0 + 2 * j])
    if limit >= 0 then
      if redis.call('ZREM', z, m) == 1 then redis.call('HINCRBY', h, 'reserved', -amount) end
      purge(h, z, now)
    end
    local spent = redis.call('HINCRBY', h, 'spent', actual)
    redis.call('HINCRBY', h, 'requests', 1)
    redis.call('HINCRBY', h, 'prompt_tokens', pt)
    redis.call('HINCRBY', h, 'completion_tokens', ct)
    redis.call('HINCRBY', h, 'savings', sav)
    redis.call('EXPIRE', h, ttl)
    if limit > 0 then
      for i = 1, nt do
        local th = ARGV[u0 + 7 + i]
        if spent >= tonumber(th) * limit and redis.call('HSETNX', h, 'alert:' .. th, 1) == 1 then
          out[#out + 1] = j; out[#out + 1] = i; out[#out + 1] = spent
        end
      end
    end
  end
  return out
end
"""

# KEYS: subjects. ARGV: now, then limit, cost per subject.
# Returns {allowed, blocked (1-based, 0 none), retry_ms, remaining_1, reset_ms_1, ...}.
ACQUIRE = _FUNCTIONS + r"""
local now = clock(ARGV[1])
local new, out, blocked, retry = {}, {}, 0, 0
for i = 1, #KEYS do
  local ok, nt, rem, reset, wait = gcra_check(KEYS[i], tonumber(ARGV[2 * i]), tonumber(ARGV[2 * i + 1]), now)
  if ok then new[i] = nt elseif blocked == 0 then blocked = i; retry = wait end
  out[#out + 1] = rem; out[#out + 1] = reset
end
if blocked == 0 then for i = 1, #KEYS do gcra_commit(KEYS[i], new[i], now) end end
local res = {blocked == 0 and 1 or 0, blocked, math.ceil(retry)}
for _, v in ipairs(out) do res[#res + 1] = v end
return res
"""

# KEYS: subjects. ARGV: now, then limit, delta per subject (a refund never leaves more than a full bucket).
ADJUST = _FUNCTIONS + r"""
local now = clock(ARGV[1])
for i = 1, #KEYS do gcra_adjust(KEYS[i], tonumber(ARGV[2 * i]), tonumber(ARGV[2 * i + 1]), now) end
return 1
"""

# KEYS: hash, holds per subject. ARGV: now, member, amount, hold_ms, then limit (-1 none), ttl per subject.
RESERVE = _FUNCTIONS + r"""
local now = clock(ARGV[1])
local b = #KEYS / 2
local j, spent, reserved = ledger_check(0, 4, b, tonumber(ARGV[3]), now)
if j > 0 then return {0, j, spent, reserved} end
ledger_commit(0, 4, b, ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), now)
return {1, 0, 0, 0}
"""

# KEYS: hash, holds per subject. ARGV: now, usage (see ledger_settle), then limit, ttl per subject.
SETTLE = _FUNCTIONS + r"""
return ledger_settle(0, 1, #KEYS / 2, clock(ARGV[1]))
"""

# KEYS: a GCRA subjects (rpm: cost 1, tpm: cost = tokens), then hash, holds per budget subject.
# ARGV: now, a, b, (limit, cost) * a, member, amount, hold_ms, (limit, ttl) * b.
# Returns {code (0 ok, 1 a rate limit, 2 budget), index, x, y, remaining_1, reset_1, ...}: x, y = retry_ms, 0 for
# a rate limit; spent, reserved for a budget. Nothing is written unless everything fits.
RESERVE_ALL = _FUNCTIONS + r"""
local now, a, b = clock(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local new, states, blocked, retry = {}, {}, 0, 0
for i = 1, a do
  local ok, nt, rem, reset, wait = gcra_check(KEYS[i], tonumber(ARGV[2 + 2 * i]), tonumber(ARGV[3 + 2 * i]), now)
  if ok then new[i] = nt elseif blocked == 0 then blocked = i; retry = wait end
  states[#states + 1] = rem; states[#states + 1] = reset
end
local function reply(code, idx, x, y)
  local res = {code, idx, x, y}
  for _, v in ipairs(states) do res[#res + 1] = v end
  return res
end
if blocked > 0 then return reply(1, blocked, math.ceil(retry), 0) end
local u = 3 + 2 * a
local m, amount, hold = ARGV[u + 1], tonumber(ARGV[u + 2]), tonumber(ARGV[u + 3])
local j, spent, reserved = ledger_check(a, u + 3, b, amount, now)
if j > 0 then return reply(2, j, spent, reserved) end
for i = 1, a do gcra_commit(KEYS[i], new[i], now) end
ledger_commit(a, u + 3, b, m, amount, hold, now)
return reply(0, 0, 0, 0)
"""

# KEYS: a tpm subjects, then hash, holds per budget subject.
# ARGV: now, a, b, (limit, delta) * a, usage (see ledger_settle), (limit, ttl) * b. Returns the alerts.
SETTLE_ALL = _FUNCTIONS + r"""
local now, a, b = clock(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
for i = 1, a do
  local delta = tonumber(ARGV[3 + 2 * i])
  if delta ~= 0 then gcra_adjust(KEYS[i], tonumber(ARGV[2 + 2 * i]), delta, now) end
end
return ledger_settle(a, 3 + 2 * a, b, now)
"""
