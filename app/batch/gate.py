"""Capacity gate: batch lines use only the spare capacity of each pool.

Per pool, batch work may hold at most ``pool_share × max_ongoing_requests`` requests. The full cap is
open only once the pool has served no real-time request for ``idle_window_s`` (a sustained quiet
window, not a gap between two requests), reached by doubling per poll; while real-time requests are in
flight, or the window has not passed yet, batch work may hold only ``busy_share`` of it; the limit also
halves whenever the engine queues requests beyond its running batch and then grows back by one per
quiet poll (AIMD).

Real-time load is the engine's unfinished requests minus the batch requests this gate knows are on the
pool (``in_engine``, counted by :class:`GatedPools` around each pool call), so batch lines still in
the pipeline's early stages are not mistaken for idle capacity. The deployment feeds
:meth:`PoolGate.observe` from each pool's ``stats()``.

With ``preempt`` (``batch.preempt``), a poll that finds real-time work on a pool where batch holds more
than the new limit preempts the newest batch lines over it: the worker cancels their pool calls (the
engine aborts them) and re-queues them without counting an attempt, so real-time requests do not share
the engine with a full batch share that was admitted while the pool was quiet.

A line whose pool is not known before routing (``model: auto``) takes a slot on every pool it may be
routed to; once the pipeline calls a pool, :class:`GatedPools` keeps that slot and releases the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from app.observability import metrics


class PoolGate:
    def __init__(self, pool: str, max_ongoing: int, max_num_seqs: int, share: float, busy_share: float,
                 backoff_queue_depth: int = 0, idle_window_s: float = 0.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.pool = pool
        self.cap = max(1, int(share * max_ongoing))
        self.busy_cap = int(self.cap * busy_share)
        self.max_num_seqs = max_num_seqs
        self.backoff_queue_depth = backoff_queue_depth
        self.idle_window_s = idle_window_s
        self.clock = clock
        self.limit = self.cap if idle_window_s <= 0 else self.busy_cap
        self.in_flight = 0  # batch slots held (lines admitted, anywhere in the pipeline)
        self.in_engine = 0  # batch requests on the pool now (GatedPools counts them around the pool call)
        self._quiet_since: float | None = None if idle_window_s > 0 else clock()
        self._urgent = 0  # urgent waiters
        self._changed = asyncio.Condition()
        self._solo: CapacityGate | None = None
        self.realtime = 0  # real-time requests on the pool at the last poll
        self._recovering = False  # the limit was halved by an engine queue and grows back additively
        self.leases: list[Lease] = []  # in admission order (the newest are preempted first)
        self.preempted = 0

    def target(self, engine_unfinished: int) -> int:
        """The limit the pool's load allows now; also updates the AIMD limit."""
        realtime = self.realtime = max(engine_unfinished - self.in_engine, 0)
        waiting = max(engine_unfinished - self.max_num_seqs, 0)
        now = self.clock()
        if realtime:
            self._quiet_since = None
        elif self._quiet_since is None:
            self._quiet_since = now
        idle = self._quiet_since is not None and now - self._quiet_since >= self.idle_window_s
        if waiting > self.backoff_queue_depth:
            self.limit = self.limit // 2
            self._recovering = True  # after an engine queue: additive increase only
        elif idle and not self._recovering:  # a sustained quiet pool: double up to the cap (slow start)
            self.limit = min(self.cap, max(self.limit + 1, 2 * self.limit))
        else:
            ceiling = self.cap if idle else self.busy_cap
            self.limit = ceiling if self.limit >= ceiling else self.limit + 1
            if not idle:
                self._recovering = False
        return self.limit

    def preempt_excess(self) -> int:
        """Real-time work arrived while batch holds more than the limit: preempt the newest preemptible
        lines over it (their pool calls are cancelled and the lines re-queued). Returns how many."""
        leaving = sum(1 for lease in self.leases if lease.preempted)  # preempted, still unwinding
        excess = self.in_flight - leaving - self.limit
        if excess <= 0 or not self.realtime:
            return 0
        done = 0
        for lease in reversed(self.leases):
            if done >= excess:
                break
            if lease.preempt is not None and not lease.preempted:
                lease.preempted = True
                lease.preempt()
                done += 1
        self.preempted += done
        return done

    async def observe(self, engine_unfinished: int, preempt: bool = False) -> None:
        self.target(engine_unfinished)
        if preempt:
            self.preempt_excess()
        metrics.BATCH_LIMIT.labels(self.pool).set(self.limit)
        async with self._changed:
            self._changed.notify_all()

    def _room(self, urgent: bool) -> bool:
        return self.in_flight < self.limit and (urgent or not self._urgent)

    @contextlib.asynccontextmanager
    async def slot(self, urgent: bool = False) -> AsyncIterator[None]:
        """A batch slot; ``urgent`` (async single requests) goes before waiting batch lines."""
        if self._solo is None:
            self._solo = CapacityGate({self.pool: self})
        async with self._solo.slot(self.pool, urgent):
            yield


class Lease:
    """The slots one line holds: on every candidate pool until the pipeline picks one (:meth:`use`)."""

    def __init__(self, gate: CapacityGate, held: list[PoolGate]) -> None:
        self.gate, self.held = gate, held
        self.preempt: Callable[[], None] | None = None  # set by the worker for preemptible (batch) lines
        self.preempted = False
        for g in held:
            g.leases.append(self)

    def use(self, pool: str) -> None:
        """The line runs on ``pool``: release the slots it holds on the others (a no-op for one pool)."""
        if len(self.held) <= 1 or all(g.pool == pool for g in self.held):
            return
        keep = [g for g in self.held if g.pool == pool]
        for g in self.held:
            if g.pool != pool:
                self._drop(g)
        self.held = keep

    def release_all(self) -> None:
        for g in self.held:
            self._drop(g)
        self.held = []

    def _drop(self, g: PoolGate) -> None:
        with contextlib.suppress(ValueError):
            g.leases.remove(self)
        self.gate.release(g)


CURRENT: contextvars.ContextVar[Lease | None] = contextvars.ContextVar("llmgw_batch_lease", default=None)


class CapacityGate:
    """One :class:`PoolGate` per pool (sharing one condition, so a line can wait for room on several);
    lines for an unknown pool are not gated."""

    def __init__(self, gates: dict[str, PoolGate]) -> None:
        self.gates = gates
        first = next(iter(gates.values()), None)  # gates already joined keep their condition (idempotent)
        changed = first._changed if first is not None else asyncio.Condition()
        for g in gates.values():
            g._changed = changed
        self._changed = changed
        self._tasks: set[asyncio.Task] = set()

    def release(self, g: PoolGate) -> None:
        g.in_flight -= 1
        metrics.BATCH_IN_FLIGHT.labels(g.pool).dec()
        task = asyncio.get_running_loop().create_task(self._notify())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    @contextlib.asynccontextmanager
    async def slot(self, pools: str | Sequence[str] | None, urgent: bool = False) -> AsyncIterator[Lease]:
        """Wait until every pool in ``pools`` has room, take a slot on each (set as the current lease)."""
        names = [pools] if isinstance(pools, str) or pools is None else list(pools)
        gates = [self.gates[n] for n in dict.fromkeys(n or "" for n in names) if n in self.gates]
        async with self._changed:
            for g in gates:
                g._urgent += urgent
            try:
                await self._changed.wait_for(lambda: all(g._room(urgent) for g in gates))
            finally:
                for g in gates:
                    g._urgent -= urgent
            for g in gates:
                g.in_flight += 1
                metrics.BATCH_IN_FLIGHT.labels(g.pool).inc()
        lease = Lease(self, gates)
        token = CURRENT.set(lease)
        try:
            yield lease
        finally:
            CURRENT.reset(token)
            lease.release_all()


class GatedPools:
    """The batch pipeline's pool client: counts batch requests on each pool (``in_engine``, what the gate
    subtracts from the engine's load) and narrows the current line's lease to the pool it calls."""

    def __init__(self, pools: Any, gates: dict[str, PoolGate]) -> None:
        self.pools, self.gates = pools, gates

    def _enter(self, pool: str) -> PoolGate | None:
        lease = CURRENT.get()
        if lease is not None:
            lease.use(pool)
        gate = self.gates.get(pool)
        if gate is not None:
            gate.in_engine += 1
        return gate

    async def generate(self, pool: str, req: Any) -> Any:
        gate = self._enter(pool)
        try:
            return await self.pools.generate(pool, req)
        finally:
            if gate is not None:
                gate.in_engine -= 1

    async def stream(self, pool: str, req: Any) -> AsyncIterator[Any]:
        gate = self._enter(pool)
        try:
            async for chunk in self.pools.stream(pool, req):
                yield chunk
        finally:
            if gate is not None:
                gate.in_engine -= 1


def pools_for(names: dict[str, str], pools: Sequence[str]) -> Callable[[Any], str | tuple[str, ...] | None]:
    """``body -> the pool(s) a line may run on``: a named pool, every pool for ``auto`` (its route is
    only known inside the pipeline), None for a model no pool serves (the pipeline answers 404)."""
    every = tuple(pools)

    def pool_for(body: Any) -> str | tuple[str, ...] | None:
        model = body.get("model") if isinstance(body, dict) else None
        pool = names.get(model) if isinstance(model, str) else None
        if pool is None:
            return None
        return pool or every

    return pool_for
