"""The batch lane's ledger: a batch's worst case held on the owner's budgets, settled exactly once."""

from __future__ import annotations

import asyncio

import pytest

from app.errors import GatewayError
from app.policy.admin_models import KeyCreate
from app.policy.batch_ledger import PolicyBatchLedger
from app.policy.ledger import to_nusd
from app.policy.service import PolicyService
from app.policy.settings import PolicyConfig, TenantDefaults
from tests.unit.policy_redis import policy_redis_fixture  # noqa: F401  (the redis_prefix fixture)


@pytest.mark.parametrize("kind", ["memory", "redis"])
async def test_reserve_settle_once_and_refuse_what_does_not_fit(kind: str, redis_prefix) -> None:
    client, prefix = redis_prefix
    svc = PolicyService(PolicyConfig(key_prefix=prefix, default_tenant=TenantDefaults(budget_daily_usd=1.0)),
                        auth_enabled=True, redis=client if kind == "redis" else None, environ={})
    record, _ = await svc.create_key(KeyCreate(tenant="acme", models=["*"]), "admin")
    ledger = PolicyBatchLedger(svc)
    subjects = ["tenant:acme", f"key:{record.id}"]
    rid = await ledger.reserve(subjects, 0.8)
    with pytest.raises(GatewayError) as info:
        await ledger.reserve(subjects, 0.3)  # 0.8 is held
    assert info.value.code == "insufficient_quota" and info.value.headers["x-should-retry"] == "false"
    await asyncio.gather(*(ledger.settle(rid, 0.25) for _ in range(5)))  # five workers, one booking
    day = svc.enforcer.calendar.day(svc.clock()).label
    rows = await svc.enforcer.ledger.read([f"tenant:acme:day:{day}", f"key:{record.id}:day:{day}"])
    assert rows[f"tenant:acme:day:{day}"]["spent"] == to_nusd(0.25)
    assert rows[f"tenant:acme:day:{day}"]["reserved"] == 0 and rows[f"key:{record.id}:day:{day}"]["requests"] == 1
    await ledger.reserve(subjects, 0.7)  # 0.25 spent + 0.7 fits in 1.0
