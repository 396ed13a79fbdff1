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
