"""Rate limits (GCRA): exact admission under concurrency, shared across replicas, token reservations."""

from __future__ import annotations

import asyncio
import time

import pytest

from app.policy.ratelimit import (
    MemoryRateLimiter,
    RedisRateLimiter,
    Subject,
    go_duration,
    ratelimit_headers,
    retry_after_headers,
)
from tests.unit.policy_redis import policy_redis_fixture  # noqa: F401  (the redis_prefix fixture)


def rpm(key: str, limit: int) -> Subject:
    return Subject(f"key:{key}:rpm", "requests", limit, 1)


def tpm(key: str, limit: int, cost: int) -> Subject:
    return Subject(f"key:{key}:tpm", "tokens", limit, cost)


@pytest.mark.parametrize("ms,text", [(0, "0s"), (20, "20ms"), (999.6, "1s"), (1000, "1s"), (1500, "1.5s"),
                                     (60_000, "1m0s"), (360_000, "6m0s"), (61_250, "1m1.25s"),
                                     (3_600_000, "1h0m0s")])
def test_reset_durations_as_openai_writes_them(ms: float, text: str) -> None:
    assert go_duration(ms) == text


async def test_memory_limiter_admits_exactly_n_and_says_when_to_retry() -> None:
    now = [1000.0]
    limiter = MemoryRateLimiter(clock=lambda: now[0])
    results = await asyncio.gather(*(limiter.acquire([rpm("a", 7)]) for _ in range(100)))
    assert sum(r.allowed for r in results) == 7
    rejected = next(r for r in results if not r.allowed)
    assert rejected.retry_after_ms == pytest.approx(60_000 / 7, abs=1)  # one slot refills after 60 s / 7
    headers = retry_after_headers(rejected.retry_after_ms)
    assert headers == {"retry-after": "9", "retry-after-ms": "8572"}
    now[0] += 60 / 7 + 0.001
    assert (await limiter.acquire([rpm("a", 7)])).allowed
    assert not (await limiter.acquire([rpm("a", 7)])).allowed


async def test_redis_100_concurrent_requests_admit_exactly_n(redis_prefix) -> None:
    client, prefix = redis_prefix
    limiter = RedisRateLimiter(client, prefix)
    results = await asyncio.gather(*(limiter.acquire([rpm("k1", 10)]) for _ in range(100)))
    assert sum(r.allowed for r in results) == 10
    assert all(r.retry_after_ms > 0 and r.blocked.key == "key:k1:rpm" for r in results if not r.allowed)
    last_ok = [r for r in results if r.allowed]
    assert min(s.remaining for r in last_ok for s in r.states) == 0


async def test_two_replicas_share_one_limit(redis_prefix) -> None:
    client, prefix = redis_prefix
    other = type(client).from_url("redis://127.0.0.1:6379/9")  # a second connection pool = another replica
    try:
        a, b = RedisRateLimiter(client, prefix), RedisRateLimiter(other, prefix)
        results = await asyncio.gather(*((a if i % 2 else b).acquire([rpm("shared", 12)]) for i in range(60)))
        assert sum(r.allowed for r in results) == 12  # not 12 x 2 (LiteLLM #40291)
    finally:
        await other.aclose()


async def test_tpm_10000_with_50_reservations_of_1000_admits_exactly_10(redis_prefix) -> None:
    client, prefix = redis_prefix
    limiter = RedisRateLimiter(client, prefix)
    results = await asyncio.gather(*(limiter.acquire([tpm("t", 10_000, 1000)]) for _ in range(50)))
    assert sum(r.allowed for r in results) == 10


@pytest.mark.parametrize("kind", ["memory", "redis"])
async def test_reservation_and_refund(kind: str, redis_prefix) -> None:
    client, prefix = redis_prefix
    limiter = MemoryRateLimiter() if kind == "memory" else RedisRateLimiter(client, prefix)
    started = time.monotonic()
    assert (await limiter.acquire([tpm("r", 10_000, 6000)])).allowed
    assert not (await limiter.acquire([tpm("r", 10_000, 6000)])).allowed
    await limiter.adjust([tpm("r", 10_000, 200 - 6000)])  # the request used 200 tokens: 5,800 refunded
    ok = await limiter.acquire([tpm("r", 10_000, 6000)])
    assert ok.allowed
    refilled = (time.monotonic() - started) * 10_000 / 60 + 1  # the bucket refills ~167 tokens per second
    assert 3800 - 1 <= ok.states[0].remaining <= 3800 + refilled  # 10,000 - 200 - 6,000
    await limiter.adjust([tpm("r", 10_000, -100_000)])  # a refund never leaves more than a full bucket
    assert (await limiter.acquire([tpm("r", 10_000, 10_000)])).allowed


@pytest.mark.parametrize("kind", ["memory", "redis"])
async def test_all_subjects_or_none(kind: str, redis_prefix) -> None:
    """Key and tenant limits are charged together: a request the tenant refuses costs the key nothing."""
    client, prefix = redis_prefix
    limiter = MemoryRateLimiter() if kind == "memory" else RedisRateLimiter(client, prefix)
    tenant = Subject("tenant:t:rpm", "requests", 2, 1)
    for _ in range(2):
        assert (await limiter.acquire([rpm("x", 5), tenant])).allowed
    refused = await limiter.acquire([rpm("x", 5), tenant])
    assert not refused.allowed and refused.blocked == tenant
    assert [s.remaining for s in (await limiter.acquire([rpm("x", 5)])).states] == [2]  # 5 - 2 - this one


def test_headers_pick_the_tightest_subject() -> None:
    from app.policy.ratelimit import SubjectState

    states = [SubjectState(rpm("k", 100), 90, 6000.0), SubjectState(Subject("tenant:t:rpm", "requests", 10, 1),
                                                                     2, 48_000.0),
              SubjectState(tpm("k", 10_000, 500), 9_500, 3000.0)]
    assert ratelimit_headers(states) == {
        "x-ratelimit-limit-requests": "10", "x-ratelimit-remaining-requests": "2",
        "x-ratelimit-reset-requests": "48s", "x-ratelimit-limit-tokens": "10000",
        "x-ratelimit-remaining-tokens": "9500", "x-ratelimit-reset-tokens": "3s"}
