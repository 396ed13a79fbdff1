"""Requests per minute charged with the reservation (one round trip for rpm + tpm + budget), the local
pre-check that refuses a known-empty bucket without a store call, and what counts as a request."""

from __future__ import annotations

import asyncio

import pytest

from app.errors import GatewayError, InvalidRequestError
from app.pipeline.context import RequestContext
from app.policy.admin_models import KeyCreate
from app.policy.ratelimit import Admission, Subject, SubjectState
from app.policy.rpm_gate import RequestsGate
from tests.unit.policy_redis import policy_redis_fixture  # noqa: F401  (the redis_prefix fixture)
from tests.unit.test_policy_stages import Pools, gateway, request, run


def count_commands(redis) -> list[str]:
    """The Redis commands this client sends from now on (a script call is one: EVALSHA)."""
    sent: list[str] = []
    original = redis.execute_command

    async def counted(*args, **kwargs):
        sent.append(str(args[0]))
        return await original(*args, **kwargs)

    redis.execute_command = counted
    return sent


async def outcome(pipe, ctx: RequestContext) -> GatewayError | None:
    try:
        await run(pipe, ctx)
    except GatewayError as err:
        return err
    return None


class Refuse:
    """A stage between admit and reserve that refuses every request (like a blocking input guardrail)."""

    name = "guard_input"

    async def __call__(self, ctx: RequestContext) -> None:
        raise InvalidRequestError("blocked", code="content_policy_violation")


async def test_hot_path_is_two_round_trips_and_a_known_empty_bucket_costs_none(redis_prefix) -> None:
    svc, pipe = gateway(redis_prefix, key_cache_ttl_s=1.0)
    _, key = await svc.create_key(KeyCreate(tenant="acme", models=["*"], rpm=3, tpm=100_000,
                                            budget_daily_usd=100.0), "admin")
    await run(pipe, request(key))  # the key and tenant records are now cached (< 1 s)
    sent = count_commands(svc.redis)
    for _ in range(2):
        ctx = await run(pipe, request(key))
        assert ctx.response_headers["x-ratelimit-limit-requests"] == "3"
    assert sent == ["EVALSHA"] * 4  # per request: reserve (rpm + tpm + budget), settle
    sent.clear()
    for _ in range(5):  # the replies said 3 of 3 are used: refused at admit, no store call at all
        err = await outcome(pipe, request(key))
        assert err is not None and (err.status_code, err.error_type, err.code) == (429, "requests",
                                                                                   "rate_limit_exceeded")
        assert int(err.headers["retry-after"]) >= 1 and int(err.headers["retry-after-ms"]) > 0
        assert err.headers["x-ratelimit-remaining-requests"] == "0"
    assert sent == []


async def test_a_second_replica_is_never_refused_on_a_guess(redis_prefix) -> None:
    svc_a, pipe_a = gateway(redis_prefix, key_cache_ttl_s=1.0)
    _, key = await svc_a.create_key(KeyCreate(tenant="acme", models=["*"], rpm=4), "admin")
    _svc_b, pipe_b = gateway(redis_prefix, key_cache_ttl_s=1.0)  # another ingress replica on the same Redis
    for _ in range(3):
        assert await outcome(pipe_a, request(key)) is None
    assert await outcome(pipe_b, request(key)) is None  # B knew nothing: the store admitted the 4th
    sent_a = count_commands(svc_a.redis)
    err = await outcome(pipe_a, request(key))  # A saw 3 of 4 used: it asks the store, which refuses
    assert err is not None and err.status_code == 429 and sent_a == ["EVALSHA"]
    # concurrent requests on two replicas still admit exactly the limit in total
    _, key2 = await svc_a.create_key(KeyCreate(tenant="acme", models=["*"], rpm=7), "admin")
    results = await asyncio.gather(*(outcome(p, request(key2)) for p in [pipe_a, pipe_b] * 30))
    assert sum(r is None for r in results) == 7


async def test_a_request_refused_for_tokens_or_budget_does_not_spend_a_request(store) -> None:
    svc, pipe = gateway(store, pools=Pools(n=150))
    _, key = await svc.create_key(KeyCreate(tenant="acme", models=["*"], rpm=2, tpm=200), "admin")
    assert await outcome(pipe, request(key, max_tokens=150)) is None  # keeps 10 + 150 of 200 tokens
    err = await outcome(pipe, request(key, max_tokens=150))  # tokens refused: all or nothing
    assert err is not None and err.error_type == "tokens"
    ctx = await run(pipe, request(key, max_tokens=1))  # the 2nd request of rpm 2 still fits
    assert ctx.response_headers["x-ratelimit-remaining-requests"] == "0"


async def test_a_request_that_ends_before_reserve_still_counts(store) -> None:
    svc, pipe = gateway(store)
    _, key = await svc.create_key(KeyCreate(tenant="acme", models=["*"], rpm=2), "admin")
    blocked = type(pipe)(stages=[*pipe.stages[:3], Refuse(), *pipe.stages[3:]], finishers=pipe.finishers)
    for _ in range(2):
        err = await outcome(blocked, request(key))
        assert err is not None and err.status_code == 400
    err = await outcome(pipe, request(key))  # the two refused-by-guardrail requests used the rpm
    assert err is not None and (err.status_code, err.error_type) == (429, "requests")


def test_the_gate_learns_only_what_the_store_proved() -> None:
    s, t = Subject("key:k:rpm", "requests", 2, 1), Subject("key:k:tpm", "tokens", 100, 50)
    gate = RequestsGate()
    # refused by tokens: nothing was charged, the rpm state is hypothetical -> learn nothing
    gate.learn(0.0, Admission(False, [SubjectState(s, 0, 60_000.0), SubjectState(t, 0, 1.0)], t, 5.0), False)
    assert gate.check([s], 1.0).allowed
    # two committed requests: tat 60 s ahead -> the third is surely refused, with the time to wait
    gate.learn(0.0, Admission(True, [SubjectState(s, 0, 60_000.0)]), True)
    refused = gate.check([s], 1_000.0)
    assert not refused.allowed and refused.blocked == s and refused.retry_after_ms == pytest.approx(28_999.0)
    assert gate.check([s], 30_000.0).allowed  # one request's worth of bucket refilled


@pytest.fixture(params=["memory", "redis"])
def store(request):
    """The ``gateway()`` argument: None (in memory) or the Redis fixture (requested only for "redis")."""
    return request.getfixturevalue("redis_prefix") if request.param == "redis" else None
