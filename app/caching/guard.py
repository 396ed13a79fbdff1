"""Bounds the ingress' calls to the cache actor: a short timeout, and after repeated failures (the
replica dead or restarting) no call at all for a cool-down, so requests miss at once instead of each
waiting out the timeout. A cache failure is always a miss (``default``), never an error.

:class:`GuardedCache` puts one guard around every call the request path makes (the cache stage's
lookup and store, the fallback chain's stale lookup), timeouts and cool-down from ``CacheConfig``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

from app.caching.entries import CachedResponse, CacheHit
from app.caching.keys import CacheQuery
from app.observability import metrics
from app.resilience.breaker import CircuitBreaker
from app.resilience.settings import BreakerConfig

if TYPE_CHECKING:
    from app.caching.settings import CacheConfig
    from app.pipeline.backends import CacheClient

T = TypeVar("T")
DEFAULT_BREAKER = BreakerConfig(failure_threshold=3, window_s=10.0, cooldown_s=2.0)
logger = logging.getLogger(__name__)


class CacheCallGuard:
    def __init__(self, timeout_s: float = 2.0, breaker: BreakerConfig = DEFAULT_BREAKER,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.timeout_s = timeout_s
        self.breaker = CircuitBreaker("cache", breaker, clock)
        self.skipped = 0  # calls not made because the breaker was open
        self.failed = 0  # calls that failed or timed out

    async def call(self, make: Callable[[], Awaitable[T]], default: T, timeout_s: float | None = None,
                   name: str = "lookup") -> T:
        """``await make()`` within the timeout; ``default`` on failure, timeout or an open breaker (counted in
        ``llmgw_cache_guard_total{call=name}``)."""
        if not self.breaker.allow():
            self.skipped += 1
            metrics.CACHE_GUARD.labels(name, "skipped").inc()
            return default
        try:
            result = await asyncio.wait_for(make(), self.timeout_s if timeout_s is None else timeout_s)
        except asyncio.CancelledError:
            self.breaker.abandon()
            raise
        except Exception as exc:
            self.failed += 1
            self.breaker.record_failure()
            metrics.CACHE_GUARD.labels(name, "timeout" if isinstance(exc, TimeoutError) else "error").inc()
            logger.warning("cache call failed (%s): a miss", type(exc).__name__)
            return default
        self.breaker.record_success()
        return result


class GuardedCache:
    """A CacheClient whose calls never raise and never outlast their timeout (one guard for all three)."""

    def __init__(self, client: CacheClient, guard: CacheCallGuard, lookup_timeout_s: float,
                 store_timeout_s: float) -> None:
        self.client, self.guard = client, guard
        self.lookup_timeout_s, self.store_timeout_s = lookup_timeout_s, store_timeout_s

    @classmethod
    def from_config(cls, client: CacheClient, cfg: CacheConfig) -> GuardedCache:
        guard = CacheCallGuard(cfg.lookup_timeout_s, cfg.call_breaker)
        return cls(client, guard, cfg.lookup_timeout_s, cfg.store_timeout_s)

    async def lookup(self, query: CacheQuery) -> CacheHit | None:
        return await self.guard.call(lambda: self.client.lookup(query), None, self.lookup_timeout_s, "lookup")

    async def store(self, query: CacheQuery, response: CachedResponse) -> None:
        await self.guard.call(lambda: self.client.store(query, response), None, self.store_timeout_s, "store")

    async def stale_lookup(self, query: CacheQuery, min_similarity: float) -> CacheHit | None:
        return await self.guard.call(lambda: self.client.stale_lookup(query, min_similarity), None,
                                     self.lookup_timeout_s, "stale_lookup")
