"""Bounds the ingress' calls to the cache actor: a short timeout, and after repeated failures (the
replica dead or restarting) no call at all for a cool-down, so requests miss at once instead of each
waiting out the timeout. A cache failure is always a miss (``default``), never an error."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from app.resilience.breaker import CircuitBreaker
from app.resilience.settings import BreakerConfig

T = TypeVar("T")
DEFAULT_BREAKER = BreakerConfig(failure_threshold=3, window_s=10.0, cooldown_s=2.0)


class CacheCallGuard:
    def __init__(self, timeout_s: float = 2.0, breaker: BreakerConfig = DEFAULT_BREAKER,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.timeout_s = timeout_s
        self.breaker = CircuitBreaker("cache", breaker, clock)
        self.skipped = 0  # calls not made because the breaker was open

    async def call(self, make: Callable[[], Awaitable[T]], default: T) -> T:
        """``await make()`` within the timeout; ``default`` on failure, timeout or an open breaker."""
        if not self.breaker.allow():
            self.skipped += 1
            return default
        try:
            result = await asyncio.wait_for(make(), self.timeout_s)
        except asyncio.CancelledError:
            self.breaker.abandon()
            raise
        except Exception:
            self.breaker.record_failure()
            return default
        self.breaker.record_success()
        return result
