"""The request path's two Redis calls: requests + tokens + budget charged together, reconciled + booked together.

Same keys as :class:`~app.policy.ratelimit.RedisRateLimiter` (``<p>:rl:<subject>``) and
:class:`~app.policy.ledger_redis.RedisLedger` (``<p>:spend:<subject>``), one script each
(``RESERVE_ALL`` / ``SETTLE_ALL``), so admission (rpm, tpm, budget) costs one round trip and
settlement one.
"""

from __future__ import annotations

from collections.abc import Callable

from app.policy import redis_lua
from app.policy.ledger import Alert, BudgetCheck, BudgetSubject, Reservation, Usage, member
from app.policy.ledger_redis import RedisLedger
from app.policy.ratelimit import Admission, Subject, SubjectState


class RedisCombined:
    def __init__(self, redis, prefix: str, clock: Callable[[], float] | None = None) -> None:
        self.p, self._clock = prefix, clock
        self._reserve = redis.register_script(redis_lua.RESERVE_ALL)
        self._settle = redis.register_script(redis_lua.SETTLE_ALL)

    def _now(self) -> str:
        return "" if self._clock is None else f"{self._clock() * 1000:.3f}"

    def _keys(self, tpm: list[Subject], budget: list[BudgetSubject]) -> list[str]:
        keys = [f"{self.p}:rl:{s.key}" for s in tpm]
        for s in budget:
            keys += [f"{self.p}:spend:{s.key}", f"{self.p}:spend:{s.key}:holds"]
        return keys

    async def reserve(self, limited: list[Subject], rid: str, amount: int, budget: list[BudgetSubject],
                      hold_s: float) -> tuple[Admission, BudgetCheck]:
        """``limited``: the GCRA subjects (rpm with cost 1, tpm with cost = tokens); nothing is written
        unless all of them and every budget fit."""
        args: list[object] = [self._now(), len(limited), len(budget)]
        for s in limited:
            args += [s.limit, s.cost]
        args += [member(rid, amount), amount, int(hold_s * 1000), *RedisLedger.limits(budget)]
        res = [int(x) for x in await self._reserve(keys=self._keys(limited, budget), args=args)]
        code, idx, x, y = res[:4]
        states = [SubjectState(s, res[4 + 2 * i], float(res[5 + 2 * i])) for i, s in enumerate(limited)]
        tokens = Admission(code != 1, states, limited[idx - 1] if code == 1 else None,
                           float(x) if code == 1 else 0.0)
        if code == 2:
            return tokens, BudgetCheck(False, budget[idx - 1], x, y)
        return tokens, BudgetCheck(code == 0)

    async def settle(self, tpm_deltas: list[Subject], reservation: Reservation, usage: Usage,
                     thresholds: list[float]) -> list[Alert]:
        budget = reservation.subjects
        args: list[object] = [self._now(), len(tpm_deltas), len(budget)]
        for s in tpm_deltas:
            args += [s.limit, s.cost]
        args += [member(reservation.rid, reservation.amount_nusd), reservation.amount_nusd, usage.actual_nusd,
                 usage.prompt_tokens, usage.completion_tokens, usage.savings_nusd, len(thresholds),
                 *(f"{t:g}" for t in thresholds), *RedisLedger.limits(budget)]
        out = [int(x) for x in await self._settle(keys=self._keys(tpm_deltas, budget), args=args)]
        return [Alert(budget[out[i] - 1], thresholds[out[i + 1] - 1], out[i + 2]) for i in range(0, len(out), 3)]
