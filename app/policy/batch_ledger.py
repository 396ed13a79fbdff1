"""The spend ledger for the batch lane (``app.batch.billing.Ledger``): one reservation per batch.

``reserve(["tenant:acme", "key:key_x"], usd)`` holds ``usd`` on those owners' day and month
budgets (of the day the batch is created) or raises 429 ``insufficient_quota``; ``settle(id, usd)``
books the batch's actual cost once — idempotent per reservation id, across workers and replicas
(a claim in the store), as a worker may die between settling and recording it.
"""

from __future__ import annotations

import json
import uuid

from app.errors import InsufficientQuotaError
from app.policy.ledger import BudgetSubject, Reservation, Usage, to_nusd
from app.policy.service import Identity, PolicyService

DEFAULT_HOLD_S = 26 * 3600  # a batch's completion window (24 h) plus margin


class PolicyBatchLedger:
    def __init__(self, policy: PolicyService, hold_s: float = DEFAULT_HOLD_S) -> None:
        self.policy, self.hold_s = policy, hold_s
        self._memory: dict[str, str] = {}  # reservation id -> record, when there is no Redis

    async def _identity(self, subjects: list[str]) -> Identity:
        tenant = next((s.split(":", 1)[1] for s in subjects if s.startswith("tenant:")), "default")
        key_id = next((s.split(":", 1)[1] for s in subjects if s.startswith("key:")), None)
        key = await self.policy.get_key(key_id) if key_id else None
        return Identity(tenant, key, await self.policy.tenant(tenant))

    async def reserve(self, subjects: list[str], usd: float) -> str:
        enforcer = self.policy.enforcer
        who = await self._identity(subjects)
        rid = f"batchres_{uuid.uuid4().hex}"
        budget = enforcer.budget_subjects(who, self.policy.clock())
        amount = to_nusd(usd)
        check = await enforcer.ledger.reserve(rid, amount, budget, self.hold_s)
        if not check.allowed:
            b = check.blocked
            raise InsufficientQuotaError(f"The batch's worst-case cost (${usd:.4f}) does not fit the {b.period}ly "
                                         f"budget of this {b.owner}.", headers={"x-should-retry": "false"})
        await self._put(rid, json.dumps({"amount": amount, "subjects": [_subject(s) for s in budget]}))
        return rid

    async def settle(self, reservation_id: str, usd: float) -> None:
        raw = await self._claim(reservation_id)
        if raw is None:  # unknown, or settled already
            return
        data = json.loads(raw)
        subjects = [BudgetSubject(**s) for s in data["subjects"]]
        reservation = Reservation(reservation_id, data["amount"], subjects)
        await self.policy.enforcer.ledger.settle(reservation, Usage(to_nusd(usd)), self.policy.cfg.alerts.thresholds)

    async def _put(self, rid: str, value: str) -> None:
        redis = self.policy.redis
        if redis is None:
            self._memory[rid] = value
        else:
            await redis.set(f"{self.policy.cfg.key_prefix}:batchres:{rid}", value, ex=int(self.hold_s) + 86_400)

    async def _claim(self, rid: str) -> str | None:
        """The reservation record, removed atomically: only the first settle gets it."""
        redis = self.policy.redis
        if redis is None:
            return self._memory.pop(rid, None)
        raw = await redis.getdel(f"{self.policy.cfg.key_prefix}:batchres:{rid}")
        return raw.decode() if isinstance(raw, bytes) else raw


def _subject(s: BudgetSubject) -> dict[str, object]:
    return {"key": s.key, "limit_nusd": s.limit_nusd, "ttl_s": s.ttl_s, "owner": s.owner, "period": s.period}
