"""Calling the policy store (Redis) with a deadline, and checking at start that it will keep our data.

Any Redis failure (unreachable, timeout, script error) becomes :class:`StoreUnavailable`; the stage
that called applies the configured fail mode (open with a metric and a warning, or closed with 503).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable
from typing import TypeVar

from redis.exceptions import RedisError

from app.errors import ServiceUnavailableError
from app.observability import metrics

logger = logging.getLogger("llmgw.policy")
T = TypeVar("T")


class StoreUnavailable(Exception):
    """The policy store did not answer (the reason is the exception's type name, never its text)."""


async def guarded(call: Awaitable[T], timeout_s: float | None = None) -> T:
    """``call``'s result; any store failure as StoreUnavailable.

    The deadline is the Redis client's own socket timeouts (``build_policy`` sets them to
    ``policy.redis_timeout_s``): no extra task per call on the hot path. ``timeout_s`` adds an
    outer deadline for clients built elsewhere.
    """
    try:
        if timeout_s is None:
            return await call
        return await asyncio.wait_for(call, timeout_s)
    except (TimeoutError, RedisError, OSError) as exc:
        raise StoreUnavailable(type(exc).__name__) from None


class FailOpenLog:
    """At most one warning per limit every ``every_s`` seconds (a Redis outage must not flood the logs)."""

    def __init__(self, every_s: float = 10.0) -> None:
        self.every_s = every_s
        self._last: dict[str, float] = {}

    def note(self, limit: str, mode: str, reason: str) -> None:
        metrics.POLICY_STORE_DOWN.labels(limit, mode).inc()
        now = time.monotonic()
        if now - self._last.get(limit, -1e9) >= self.every_s:
            self._last[limit] = now
            logger.warning("policy store unavailable (%s): %s limit fails %s", reason, limit, mode)


def unavailable(limit: str) -> ServiceUnavailableError:
    return ServiceUnavailableError(f"The gateway cannot check the {limit} limit right now; retry shortly.",
                                   code="policy_store_unavailable", headers={"retry-after": "1"})


async def check_durability(redis, refuse: bool) -> str | None:
    """Warn (or raise, ``refuse``) unless Redis keeps keys and spend: ``maxmemory-policy noeviction``.

    Returns the problem found (None when fine). AOF off is reported as advice only (docs/policy.md).
    """
    try:
        policy = (await redis.config_get("maxmemory-policy")).get("maxmemory-policy")
        aof = (await redis.config_get("appendonly")).get("appendonly")
    except RedisError as exc:  # managed Redis may forbid CONFIG: say so, do not fail
        logger.warning("policy store: cannot read Redis config (%s); make sure maxmemory-policy is noeviction",
                       type(exc).__name__)
        return None
    policy = policy.decode() if isinstance(policy, bytes) else policy
    aof = aof.decode() if isinstance(aof, bytes) else aof
    if aof != "yes":
        logger.warning("policy store: Redis appendonly is %r; keys and spend survive a restart only with AOF "
                       "(appendonly yes, appendfsync everysec) or RDB snapshots (docs/policy.md)", aof)
    if policy != "noeviction":
        problem = (f"Redis maxmemory-policy is {policy!r}: under memory pressure it may evict API keys and spend "
                   "counters; set noeviction or use a separate instance for the policy store")
        if refuse:
            raise RuntimeError(problem)
        logger.error("policy store: %s", problem)
        return problem
    return None
