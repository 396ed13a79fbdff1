"""The spend ledger in Redis: reserve and settle are one Lua script each (atomic over all subjects).

Per subject: hash ``<p>:spend:<subject>`` (spent, reserved, requests, tokens, savings, alert flags)
and sorted set ``<p>:spend:<subject>:holds`` of ``rid|amount`` scored by expiry (ms), purged on use.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from app.policy import redis_lua
from app.policy.ledger import Alert, BudgetCheck, BudgetSubject, Reservation, Usage, member


class RedisLedger:
    def __init__(self, redis, prefix: str, clock: Callable[[], float] = time.time) -> None:
        self.r, self.p, self._clock = redis, prefix, clock
        self._reserve = redis.register_script(redis_lua.RESERVE)
        self._settle = redis.register_script(redis_lua.SETTLE)

    def keys(self, subjects: list[BudgetSubject]) -> list[str]:
        keys: list[str] = []
        for s in subjects:
            keys += [f"{self.p}:spend:{s.key}", f"{self.p}:spend:{s.key}:holds"]
        return keys

    @staticmethod
    def limits(subjects: list[BudgetSubject]) -> list[int]:
        out: list[int] = []
        for s in subjects:
            out += [-1 if s.limit_nusd is None else s.limit_nusd, s.ttl_s]
        return out

    async def reserve(self, rid: str, amount_nusd: int, subjects: list[BudgetSubject],
                      hold_s: float) -> BudgetCheck:
        now = int(self._clock() * 1000)
        args = [now, member(rid, amount_nusd), amount_nusd, int(hold_s * 1000), *self.limits(subjects)]
        ok, idx, spent, reserved = (int(x) for x in await self._reserve(keys=self.keys(subjects), args=args))
        return BudgetCheck(True) if ok else BudgetCheck(False, subjects[idx - 1], spent, reserved)

    async def settle(self, reservation: Reservation, usage: Usage, thresholds: list[float]) -> list[Alert]:
        subjects = reservation.subjects
        args = [int(self._clock() * 1000), member(reservation.rid, reservation.amount_nusd), reservation.amount_nusd,
                usage.actual_nusd, usage.prompt_tokens, usage.completion_tokens, usage.savings_nusd,
                len(thresholds), *(f"{t:g}" for t in thresholds), *self.limits(subjects)]
        out = [int(x) for x in await self._settle(keys=self.keys(subjects), args=args)]
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
