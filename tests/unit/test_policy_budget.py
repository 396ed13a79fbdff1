"""Spend ledger: never overspent under concurrency, calendar resets at a frozen clock, alerts once."""

from __future__ import annotations

import asyncio
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from app.policy.ledger import BudgetSubject, MemoryLedger, Reservation, Usage, to_nusd
from app.policy.ledger_redis import RedisLedger
from app.policy.periods import Calendar
from tests.unit.policy_redis import policy_redis_fixture  # noqa: F401  (the redis_prefix fixture)


def ledger_of(kind: str, redis_prefix, clock):
    client, prefix = redis_prefix
    return MemoryLedger(clock) if kind == "memory" else RedisLedger(client, prefix, clock)


def subj(key: str, usd: float | None) -> BudgetSubject:
    return BudgetSubject(key, None if usd is None else to_nusd(usd), 3600, "key", "day")


@pytest.mark.parametrize("kind", ["memory", "redis"])
async def test_budget_never_overspent_by_100_concurrent_worst_case_requests(kind: str, redis_prefix) -> None:
    ledger = ledger_of(kind, redis_prefix, lambda: 1000.0)
    budget = [subj("key:k:day:d", 0.01), subj("tenant:t:day:d", None)]
    worst = to_nusd(0.0003)  # every request may cost up to $0.0003: 33 fit in $0.01, the 34th would not

    async def request(i: int) -> bool:
        check = await ledger.reserve(f"r{i}", worst, budget, 60)
        if check.allowed:
            await asyncio.sleep(0)
            await ledger.settle(Reservation(f"r{i}", worst, budget), Usage(worst, 10, 20), [])
        return check.allowed

    admitted = await asyncio.gather(*(request(i) for i in range(100)))
    assert sum(admitted) == 33
    state = await ledger.read(["key:k:day:d", "tenant:t:day:d"])
    assert state["key:k:day:d"]["spent"] == 33 * worst <= to_nusd(0.01)
    assert state["key:k:day:d"]["reserved"] == 0 and state["tenant:t:day:d"]["requests"] == 33


@pytest.mark.parametrize("kind", ["memory", "redis"])
async def test_settle_books_actual_and_releases_the_rest(kind: str, redis_prefix) -> None:
    ledger = ledger_of(kind, redis_prefix, lambda: 1000.0)
    s = [subj("key:s:day:d", 1.0)]
    assert (await ledger.reserve("a", to_nusd(0.9), s, 60)).allowed
    assert not (await ledger.reserve("b", to_nusd(0.2), s, 60)).allowed  # 0.9 held
    await ledger.settle(Reservation("a", to_nusd(0.9), s), Usage(to_nusd(0.1), 5, 5, to_nusd(0.0)), [])
    assert (await ledger.reserve("b", to_nusd(0.2), s, 60)).allowed  # only the actual 0.1 stays spent
    row = (await ledger.read(["key:s:day:d"]))["key:s:day:d"]
    assert row["spent"] == to_nusd(0.1) and row["reserved"] == to_nusd(0.2)


@pytest.mark.parametrize("kind", ["memory", "redis"])
async def test_a_crashed_replicas_hold_expires(kind: str, redis_prefix) -> None:
    now = [1000.0]
    ledger = ledger_of(kind, redis_prefix, lambda: now[0])
    s = [subj("key:c:day:d", 1.0)]
    assert (await ledger.reserve("lost", to_nusd(1.0), s, 30)).allowed  # never settled
    assert not (await ledger.reserve("next", 1, s, 30)).allowed
    now[0] += 31
    assert (await ledger.reserve("next", 1, s, 30)).allowed


@pytest.mark.parametrize("kind", ["memory", "redis"])
async def test_alerts_fire_once_per_threshold_and_period(kind: str, redis_prefix) -> None:
    ledger = ledger_of(kind, redis_prefix, lambda: 1000.0)
    s = [subj("key:a:day:d", 1.0)]
    fired = []
    for i, usd in enumerate([0.3, 0.3, 0.3, 0.3, 0.1]):
        r = Reservation(f"x{i}", to_nusd(usd), s)
        if not (await ledger.reserve(r.rid, r.amount_nusd, s, 60)).allowed:
            fired.append("refused")
            continue
        fired.append([a.threshold for a in await ledger.settle(r, Usage(to_nusd(usd)), [0.5, 0.8, 1.0])])
    # spent 0.3, 0.6 (50 %), 0.9 (80 %), the 4th would exceed the budget, the 5th reaches 100 %
    assert fired == [[], [0.5], [0.8], "refused", [1.0]]
    assert not (await ledger.reserve("z", 1, s, 60)).allowed
    nxt = [subj("key:a:day:d2", 1.0)]  # the next day's window alerts again
    r = Reservation("y", to_nusd(0.6), nxt)
    await ledger.reserve("y", r.amount_nusd, nxt, 60)
    assert [a.threshold for a in await ledger.settle(r, Usage(to_nusd(0.6)), [0.5, 0.8, 1.0])] == [0.5]


def ts(tz: str, *parts: int) -> float:
    return datetime(*parts, tzinfo=ZoneInfo(tz)).timestamp()


def test_periods_reset_exactly_at_local_midnight_and_the_first() -> None:
    cal = Calendar("Europe/Paris")
    before = ts("Europe/Paris", 2026, 11, 30, 23, 59, 59) + 0.999
    at = ts("Europe/Paris", 2026, 12, 1, 0, 0, 0)
    assert cal.day(before).label == "2026-11-30" and cal.day(at).label == "2026-12-01"
    assert cal.month(before).label == "2026-11" and cal.month(at).label == "2026-12"
    assert cal.day(before).end == at == cal.month(before).end
    assert cal.day(at).seconds_left(at) == 86_400
    # 23:30 UTC on Nov 30 is already Dec 1 in Paris: the zone decides, not UTC
    assert Calendar("UTC").day(ts("UTC", 2026, 11, 30, 23, 30)).label == "2026-11-30"
    assert cal.day(ts("UTC", 2026, 11, 30, 23, 30)).label == "2026-12-01"
    dst = Calendar("Europe/Paris").day(ts("Europe/Paris", 2026, 3, 29, 12))  # a 23-hour day
    assert dst.end - dst.start == 23 * 3600
    dec = Calendar("UTC").month(ts("UTC", 2026, 12, 31, 23, 59))
    assert datetime.fromtimestamp(dec.end, ZoneInfo("UTC")) == datetime(2027, 1, 1, tzinfo=ZoneInfo("UTC"))


async def test_combined_reserve_never_overspends_and_holds_tokens_atomically(redis_prefix) -> None:
    """The Redis path the stages use: tokens + budget in one script, 100 concurrent worst-case requests."""
    from app.policy.prices import Price, PriceTable
    from app.policy.service import PolicyService
    from app.policy.settings import PolicyConfig, TenantDefaults

    client, prefix = redis_prefix
    svc = PolicyService(PolicyConfig(key_prefix=prefix, default_tenant=TenantDefaults(
        budget_daily_usd=0.01, tpm=60)), auth_enabled=False, redis=client, environ={})  # 1 token/s
    svc.enforcer.prices = PriceTable({"m": Price(1000.0, 1000.0)})  # $0.001 per token
    who = await svc.authenticate({"x-llmgw-tenant": "acme"})

    async def one(i: int):
        try:
            hold, _ = await svc.enforcer.reserve(who, f"r{i}", 1, 2, ["m"])  # worst case 3 tokens = $0.003
        except Exception as exc:
            return exc
        return hold

    started_ms = svc.clock() * 1000
    results = await asyncio.gather(*(one(i) for i in range(100)))
    ended_ms = svc.clock() * 1000
    holds = [r for r in results if not isinstance(r, Exception)]
    assert len(holds) == 3 and all(getattr(r, "code", "") == "insufficient_quota" for r in results
                                   if isinstance(r, Exception))
    day = svc.enforcer.calendar.day(svc.clock()).label
    # the 97 refused by the budget took no tokens: the bucket holds exactly 3 x 3 tokens (9 s at 1 token/s)
    # (the bucket's "tat" is then 9 s after the first reservation: same machine clock as Redis TIME)
    tat = float(await client.get(f"{prefix}:rl:tenant:acme:tpm"))
    assert started_ms + 9_000 - 5 <= tat <= ended_ms + 9_000 + 5
    for hold in holds:
        await svc.enforcer.settle(who, hold, Usage(to_nusd(0.002), 1, 1))
    row = (await svc.enforcer.ledger.read([f"tenant:acme:day:{day}"]))[f"tenant:acme:day:{day}"]
    assert row["spent"] == 3 * to_nusd(0.002) <= to_nusd(0.01) and row["reserved"] == 0
