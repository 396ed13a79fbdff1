"""The spend ledger in Redis: reserve and settle are one Lua script each (atomic over all subjects).

Per subject: hash ``<p>:spend:<subject>`` (spent, reserved, requests, tokens, savings, alert flags)
and sorted set ``<p>:spend:<subject>:holds`` of ``rid|amount`` scored by expiry (ms), purged on use.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from app.policy.ledger import Alert, BudgetCheck, BudgetSubject, Reservation, Usage, member

_PURGE = """
local function purge(h, z, now)
  local gone = redis.call('ZRANGEBYSCORE', z, '-inf', now)
  for _, m in ipairs(gone) do
    redis.call('HINCRBY', h, 'reserved', -tonumber(string.match(m, '|(%d+)$')))
  end
  if #gone > 0 then redis.call('ZREMRANGEBYSCORE', z, '-inf', now) end
end
"""

# KEYS: hash, holds per subject. ARGV: now_ms, member, amount, hold_ms, then limit (-1 none), ttl_s per subject.
RESERVE_LUA = _PURGE + """
local now, m, amount, hold = tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local n = #KEYS / 2
for i = 1, n do
  local h, z, limit = KEYS[2 * i - 1], KEYS[2 * i], tonumber(ARGV[3 + 2 * i])
  purge(h, z, now)
  if limit >= 0 then
    local spent = tonumber(redis.call('HGET', h, 'spent') or '0')
    local reserved = tonumber(redis.call('HGET', h, 'reserved') or '0')
    if spent + reserved + amount > limit then return {0, i, spent, reserved} end
  end
end
for i = 1, n do
  local h, z, ttl = KEYS[2 * i - 1], KEYS[2 * i], tonumber(ARGV[4 + 2 * i])
  redis.call('HINCRBY', h, 'reserved', amount)
  redis.call('ZADD', z, now + hold, m)
  redis.call('EXPIRE', h, ttl)
  redis.call('EXPIRE', z, ttl)
end
return {1, 0, 0, 0}
"""

# KEYS: hash, holds per subject. ARGV: now_ms, member, amount, actual, prompt, completion, savings,
# n_thresholds, thresholds..., then limit (-1 none), ttl_s per subject. Returns {subject, threshold_index, spent}*.
SETTLE_LUA = _PURGE + """
local now, m, amount = tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3])
local actual, pt, ct, sav = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local nt = tonumber(ARGV[8])
local base = 8 + nt
local out = {}
for i = 1, #KEYS / 2 do
  local h, z = KEYS[2 * i - 1], KEYS[2 * i]
  local limit, ttl = tonumber(ARGV[base + 2 * i - 1]), tonumber(ARGV[base + 2 * i])
  if redis.call('ZREM', z, m) == 1 then redis.call('HINCRBY', h, 'reserved', -amount) end
  purge(h, z, now)
  local spent = redis.call('HINCRBY', h, 'spent', actual)
  redis.call('HINCRBY', h, 'requests', 1)
  redis.call('HINCRBY', h, 'prompt_tokens', pt)
  redis.call('HINCRBY', h, 'completion_tokens', ct)
  redis.call('HINCRBY', h, 'savings', sav)
  redis.call('EXPIRE', h, ttl)
  if limit > 0 then
    for j = 1, nt do
      local t = tonumber(ARGV[8 + j])
      if spent >= t * limit and redis.call('HSETNX', h, 'alert:' .. ARGV[8 + j], 1) == 1 then
        out[#out + 1] = i; out[#out + 1] = j; out[#out + 1] = spent
      end
    end
  end
end
return out
"""


class RedisLedger:
    def __init__(self, redis, prefix: str, clock: Callable[[], float] = time.time) -> None:
        self.r, self.p, self._clock = redis, prefix, clock
        self._reserve = redis.register_script(RESERVE_LUA)
        self._settle = redis.register_script(SETTLE_LUA)

    def _keys(self, subjects: list[BudgetSubject]) -> list[str]:
        keys: list[str] = []
        for s in subjects:
            keys += [f"{self.p}:spend:{s.key}", f"{self.p}:spend:{s.key}:holds"]
        return keys

    @staticmethod
    def _limits(subjects: list[BudgetSubject]) -> list[int]:
        out: list[int] = []
        for s in subjects:
            out += [-1 if s.limit_nusd is None else s.limit_nusd, s.ttl_s]
        return out

    async def reserve(self, rid: str, amount_nusd: int, subjects: list[BudgetSubject],
                      hold_s: float) -> BudgetCheck:
        now = int(self._clock() * 1000)
        args = [now, member(rid, amount_nusd), amount_nusd, int(hold_s * 1000), *self._limits(subjects)]
        ok, idx, spent, reserved = (int(x) for x in await self._reserve(keys=self._keys(subjects), args=args))
        return BudgetCheck(True) if ok else BudgetCheck(False, subjects[idx - 1], spent, reserved)

    async def settle(self, reservation: Reservation, usage: Usage, thresholds: list[float]) -> list[Alert]:
        subjects = reservation.subjects
        args = [int(self._clock() * 1000), member(reservation.rid, reservation.amount_nusd), reservation.amount_nusd,
                usage.actual_nusd, usage.prompt_tokens, usage.completion_tokens, usage.savings_nusd,
                len(thresholds), *(f"{t:g}" for t in thresholds), *self._limits(subjects)]
        out = [int(x) for x in await self._settle(keys=self._keys(subjects), args=args)]
        return [Alert(subjects[out[i] - 1], thresholds[out[i + 1] - 1], out[i + 2]) for i in range(0, len(out), 3)]

    async def read(self, keys: list[str]) -> dict[str, dict[str, int]]:
        result: dict[str, dict[str, int]] = {}
        async with self.r.pipeline(transaction=False) as pipe:
            for k in keys:
                pipe.hgetall(f"{self.p}:spend:{k}")
            rows = await pipe.execute()
        for k, row in zip(keys, rows, strict=True):
            if row:
                result[k] = {(f.decode() if isinstance(f, bytes) else f): int(v) for f, v in row.items()}
        return result
