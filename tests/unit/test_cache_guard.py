"""CacheCallGuard: a dead cache replica costs a few timeouts, then misses at once until it is back."""

from __future__ import annotations

import asyncio
import time

from app.caching.guard import CacheCallGuard
from app.resilience.settings import BreakerConfig


def test_dead_cache_is_skipped_after_a_few_timeouts_then_probed() -> None:
    now = [0.0]
    guard = CacheCallGuard(timeout_s=0.05, breaker=BreakerConfig(failure_threshold=2, window_s=10, cooldown_s=5),
                           clock=lambda: now[0])
    calls = []

    async def hang():
        calls.append("hang")
        await asyncio.sleep(10)

    async def answer():
        calls.append("answer")
        return "hit"

    async def go():
        assert await guard.call(hang, None) is None
        assert await guard.call(hang, None) is None  # second timeout opens the breaker
        t0 = time.perf_counter()
        assert await guard.call(hang, "miss") == "miss"  # not even called
        assert time.perf_counter() - t0 < 0.01 and calls == ["hang", "hang"] and guard.skipped == 1
        now[0] = 6.0  # after the cool-down one probe goes through
        assert await guard.call(answer, None) == "hit" and guard.breaker.state == "closed"

    asyncio.run(go())


def test_errors_are_misses_and_cancellation_propagates() -> None:
    guard = CacheCallGuard(timeout_s=1.0)

    async def boom():
        raise ConnectionError("replica died")

    async def go():
        assert await guard.call(boom, None) is None
        task = asyncio.ensure_future(guard.call(lambda: asyncio.sleep(10), None))
        await asyncio.sleep(0.01)
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            return
        raise AssertionError("cancellation swallowed")

    asyncio.run(go())


# ---- GuardedCache in the request path (app/pipeline/build.py wraps every cache client) -----------------
class SlowCache:
    """A cache replica that hangs (or fails) on every call, counting them."""

    def __init__(self, fail: bool = False) -> None:
        self.fail, self.calls = fail, []

    async def _call(self, name: str):
        self.calls.append(name)
        if self.fail:
            raise ConnectionError("cache replica died")
        await asyncio.sleep(60)

    async def lookup(self, query):
        return await self._call("lookup")

    async def store(self, query, response) -> None:
        await self._call("store")

    async def stale_lookup(self, query, min_similarity):
        return await self._call("stale_lookup")


def _pipeline(cache, pools=None):
    from tests.unit.test_pipeline import config, make

    cfg = config(cache={"lookup_timeout_s": 0.1, "store_timeout_s": 0.1,
                        "call_breaker": {"failure_threshold": 3, "window_s": 10, "cooldown_s": 30}})
    return make(cfg=cfg, cache=cache, pools=pools)


async def test_a_hanging_cache_costs_three_short_timeouts_then_nothing() -> None:
    from app.observability import metrics
    from tests.unit.test_pipeline import chat, ctx_for, drain

    def guard_count(call: str, outcome: str) -> float:
        return metrics.CACHE_GUARD.labels(call, outcome)._value.get()

    before = {k: guard_count(*k) for k in (("lookup", "timeout"), ("lookup", "skipped"), ("store", "timeout"))}
    cache = SlowCache()
    pipe, pools, counting = _pipeline(cache)
    await drain(pipe, ctx_for(chat("warm up", cache=False)))  # tokenizer, guardrails: loaded once, no cache call
    waits = []
    for i in range(5):
        t0 = time.perf_counter()
        ctx = ctx_for(chat(f"question {i}", temperature=0))
        assert await drain(pipe, ctx) == "w w w "
        waits.append(time.perf_counter() - t0)
        assert ctx.cache_status == "miss"
    await asyncio.sleep(0.3)  # the stores of the first answers time out too
    assert len(cache.calls) == 3 and len(pools.calls) == 6  # 3 failed calls (lookups, a store), then none at all
    assert all(w < 1.0 for w in waits) and max(waits[3:]) < 0.05, waits  # never the old 2 s, then no wait at all
    assert counting.seen == [(200, None, False)] * 6
    seen = {k: guard_count(*k) - v for k, v in before.items()}
    assert seen[("lookup", "timeout")] + seen[("store", "timeout")] == 3 and seen[("lookup", "skipped")] >= 2


async def test_a_failing_cache_is_a_miss_and_a_stale_lookup_that_hangs_is_bounded() -> None:
    from app.errors import ServiceUnavailableError
    from tests.unit.test_pipeline import Pools, chat, ctx_for, drain

    pipe, _, _ = _pipeline(SlowCache(fail=True))
    ctx = ctx_for(chat(temperature=0))
    assert await drain(pipe, ctx) == "w w w " and ctx.cache_status == "miss"
    hanging = SlowCache()
    pipe, _, counting = _pipeline(hanging, pools=Pools(fail={"small", "large"}))
    t0 = time.perf_counter()
    try:
        await pipe.run(ctx_for(chat(temperature=0)))
    except ServiceUnavailableError:
        pass
    else:
        raise AssertionError("no pool and no stale answer: expected a 503")
    assert time.perf_counter() - t0 < 1.5  # lookup and stale lookup 0.1 s each, not a stalled request
    assert hanging.calls == ["lookup", "stale_lookup"] and counting.seen == [(503, "service_unavailable", False)]
