"""Capacity gate: batch lines use only the spare capacity of each pool.

Per pool, batch work may hold at most ``pool_share × max_ongoing_requests`` requests, only
``busy_share`` of that while real-time requests are in flight, and it halves its limit whenever the
engine queues requests beyond its running batch (AIMD: +1 per quiet poll, ÷2 when the queue grows).
The deployment feeds :meth:`PoolGate.observe` from the pool's ``stats()``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from app.observability import metrics


class PoolGate:
    def __init__(self, pool: str, max_ongoing: int, max_num_seqs: int, share: float, busy_share: float,
                 backoff_queue_depth: int = 0) -> None:
        self.pool = pool
        self.cap = max(1, int(share * max_ongoing))
        self.busy_cap = int(self.cap * busy_share)
        self.max_num_seqs = max_num_seqs
        self.backoff_queue_depth = backoff_queue_depth
        self.limit = self.cap
        self.in_flight = 0
        self._urgent = 0  # urgent waiters
        self._changed = asyncio.Condition()

    def target(self, engine_unfinished: int) -> int:
        """The limit the pool's load allows now; also updates the AIMD limit."""
        realtime = max(engine_unfinished - self.in_flight, 0)
        waiting = max(engine_unfinished - self.max_num_seqs, 0)
        if waiting > self.backoff_queue_depth:
            self.limit = self.limit // 2
        else:
            ceiling = self.cap if realtime == 0 else self.busy_cap
            self.limit = ceiling if self.limit >= ceiling else self.limit + 1
        return self.limit

    async def observe(self, engine_unfinished: int) -> None:
        self.target(engine_unfinished)
        metrics.BATCH_LIMIT.labels(self.pool).set(self.limit)
        async with self._changed:
            self._changed.notify_all()

    @contextlib.asynccontextmanager
    async def slot(self, urgent: bool = False) -> AsyncIterator[None]:
        """A batch slot; ``urgent`` (async single requests) goes before waiting batch lines."""
        async with self._changed:
            self._urgent += urgent
            try:
                await self._changed.wait_for(lambda: self.in_flight < self.limit and (urgent or not self._urgent))
            finally:
                self._urgent -= urgent
            self.in_flight += 1
        metrics.BATCH_IN_FLIGHT.labels(self.pool).inc()
        try:
            yield
        finally:
            metrics.BATCH_IN_FLIGHT.labels(self.pool).dec()
            async with self._changed:
                self.in_flight -= 1
                self._changed.notify_all()


class CapacityGate:
    """One :class:`PoolGate` per pool; lines for an unknown pool share an ungated slot count."""

    def __init__(self, gates: dict[str, PoolGate]) -> None:
        self.gates = gates

    def slot(self, pool: str | None, urgent: bool = False):
        gate = self.gates.get(pool or "")
        return gate.slot(urgent) if gate is not None else contextlib.nullcontext()
