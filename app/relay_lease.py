"""Pool leases: a Serve call routed before its request exists, so a stream starts without a handle hop.

A relay stream (``app.stream_relay``) costs one Serve handle call before the engine starts (about 3-6 ms on
these machines: routing, the replica's accept, the ticket's trip back). A *lease* is that same call made
ahead of time: the pool replica opens a channel, sends its ticket back, and waits up to ``ttl_s`` for a
request to arrive on the relay socket under that ticket. The ingress keeps a few such leases per pool;
a stream takes one, writes the ticket and the request over a keep-alive connection, and the replica starts
the engine at once. Serve still picked the replica, still counts the call (autoscaling, ``max_ongoing``)
and still cancels it when the client goes away; a replica that dies ends its leases' calls.

An unused lease expires after ``ttl_s`` and is only renewed while traffic came within the last ``ttl_s``,
so an idle gateway holds no leases (scale to zero keeps working). The ticket is the capability: the
replica reads a request frame only after a ticket it issued for a lease. No ``ray`` import.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from app.stream_relay import (
    RelayBroken,
    RelayConnections,
    RelayServer,
    RelayStream,
    RelayTicket,
    WrappingStream,
    _frame,
    deliver,
)

logger = logging.getLogger(__name__)


async def lease_chunks(server: RelayServer, start: Callable[[Any], AsyncIterator[Any]], ttl_s: float,
                       delivery_timeout_s: float = 60.0, on_last: Any = None) -> AsyncIterator[RelayTicket]:
    """Replica side of one lease: yield a ticket, wait for its request (``start(payload)`` gives the chunks)."""
    await server.start()
    channel = server.open(lease=True)
    try:
        yield server.ticket(channel)
        try:
            payload = await asyncio.wait_for(asyncio.shield(channel.request), ttl_s)
        except TimeoutError:
            return  # expired unused: nothing ran
        await deliver(server, channel, start(payload), delivery_timeout_s, on_last)
    finally:
        server.close(channel)


@dataclass
class Lease:
    serve_stream: Any  # the replica's Serve call: has yielded its ticket, ends when the leased stream is done
    ticket: RelayTicket
    expires: float


class LeasedStream(RelayStream):
    """A ``RelayStream`` whose ticket came ahead of time; the request goes over the socket with it."""

    def __init__(self, lease: Lease, payload: Any, connections: RelayConnections) -> None:
        super().__init__(lease.serve_stream, connections, ticket=lease.ticket, payload=_frame(("request", payload)))


class LeaseOrCall(WrappingStream):
    """A leased stream that, if the lease fails before its first item (expired or dropped by the replica, its
    socket gone), goes on as ``plain()``: the Serve call the lease saved. Nothing reached the caller yet, so the
    answer is the same; ``on_miss`` is told. Later failures are the stream's own."""

    def __init__(self, leased: LeasedStream, plain: Callable[[], Any], on_miss: Callable[[], None] | None = None):
        self.stream: Any = leased
        self.plain, self.on_miss = plain, on_miss
        self._started = False

    async def __anext__(self) -> Any:
        if self._started:
            return await anext(self.stream)
        try:
            item = await anext(self.stream)
        except RelayBroken:
            self.stream.cancel()
            if self.on_miss is not None:
                self.on_miss()
            self.stream = self.plain()
            item = await anext(self.stream)
        self._started = True
        return item


class PoolLeases:
    """Ingress side: up to ``size`` ready leases per pool, renewed while the pool had traffic within ``ttl_s``.

    ``open(pool)`` makes the Serve call (``ModelPool.lease``) and returns its stream; tests give a fake one.
    """

    def __init__(self, open_lease: Callable[[str, float], Any], size: int = 1, ttl_s: float = 30.0,
                 clock: Callable[[], float] = time.monotonic,
                 observe: Callable[[str, str], None] | None = None) -> None:
        self.open_lease, self.size, self.ttl_s, self.clock = open_lease, size, ttl_s, clock
        self.observe = observe  # (pool, outcome) for each count below: the ingress's llmgw_pool_leases counter
        self.margin_s = min(1.0, ttl_s / 4)  # a lease this close to its end is not handed out
        self._ready: dict[str, deque[Lease]] = {}
        self._opening: dict[str, int] = {}
        self._last_use: dict[str, float] = {}
        self._tasks: set[asyncio.Task] = set()
        self.counts = {"taken": 0, "missed": 0, "expired": 0, "failed": 0, "stale": 0}

    def take(self, pool: str) -> Lease | None:
        """A ready lease for ``pool`` (None: there is none; the caller makes its own Serve call). Renews."""
        now = self.clock()
        self._last_use[pool] = now
        ready = self._ready.setdefault(pool, deque())
        lease = None
        while ready:
            candidate = ready.popleft()
            if candidate.expires - self.margin_s > now:
                lease = candidate
                break
            self._count(pool, "expired")
            self._drop(candidate)
        self._count(pool, "taken" if lease is not None else "missed")
        self._refill(pool)
        return lease

    def _refill(self, pool: str) -> None:
        if self.size <= 0:
            return
        missing = self.size - len(self._ready.get(pool, ())) - self._opening.get(pool, 0)
        for _ in range(max(0, missing)):
            self._opening[pool] = self._opening.get(pool, 0) + 1
            task = asyncio.ensure_future(self._open(pool))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _open(self, pool: str) -> None:
        stream = None
        try:
            # the replica's wait starts after this call reached it: counting from now, the lease ends here first
            # (counting from the ticket's arrival, a slow trip back left leases the replica had already dropped)
            expires = self.clock() + self.ttl_s
            stream = self.open_lease(pool, self.ttl_s)
            ticket = await anext(stream)
            lease = Lease(stream, ticket, expires)
            self._ready.setdefault(pool, deque()).append(lease)
            asyncio.get_running_loop().call_later(self.ttl_s, self._expire, pool, lease)
        except Exception as exc:  # a pool with no replica or a dying one: the next stream goes the plain way
            self._count(pool, "failed")
            logger.debug("pool lease for %s failed: %s", pool, type(exc).__name__)
            _cancel(stream)
        finally:
            self._opening[pool] -= 1

    def _expire(self, pool: str, lease: Lease) -> None:
        ready = self._ready.get(pool)
        if ready is None or lease not in ready:
            return  # taken meanwhile
        ready.remove(lease)
        self._count(pool, "expired")
        self._drop(lease)
        if self.clock() - self._last_use.get(pool, float("-inf")) < self.ttl_s:
            self._refill(pool)  # traffic lately: keep one ready; idle pools hold none

    @staticmethod
    def _drop(lease: Lease) -> None:
        _cancel(lease.serve_stream)

    def stale(self, pool: str) -> None:
        """A taken lease failed before its first item (the caller made its own call instead)."""
        self._count(pool, "stale")

    def _count(self, pool: str, outcome: str) -> None:
        self.counts[outcome] += 1
        if self.observe is not None:
            self.observe(pool, outcome)

    def ready(self, pool: str) -> int:
        return len(self._ready.get(pool, ()))

    def close(self) -> None:
        for ready in self._ready.values():
            while ready:
                self._drop(ready.popleft())
        for task in self._tasks:
            task.cancel()



def _cancel(serve_stream: Any) -> None:
    """End a Serve call that will not be used (a lease's, or one that failed before its ticket)."""
    cancel = getattr(serve_stream, "cancel", None)
    if cancel is not None:
        with contextlib.suppress(Exception):
            cancel()


__all__ = ["Lease", "LeaseOrCall", "LeasedStream", "PoolLeases", "lease_chunks"]
