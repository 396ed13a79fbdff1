"""Pool leases (app/relay_lease.py): a Serve call booked ahead, its request sent over a real loopback relay socket."""

from __future__ import annotations

import asyncio
import time

from app.generation import GenerationChunk
from app.relay_lease import Lease, LeasedStream, LeaseOrCall, PoolLeases, lease_chunks
from app.stream_relay import (
    LEASE_MARK,
    RelayBroken,
    RelayConnections,
    RelayServer,
    RelayStream,
    RelayTicket,
    _frame,
    _read_frame,
    relay_chunks,
)
from tests.unit.test_stream_relay import ServeStream, collect, engine, run


def _started(log: list, n: int = 3, **kw):
    def start(payload):
        log.append(payload)
        return engine(n, **kw)
    return start


async def _lease(server: RelayServer, start, ttl_s: float = 5.0) -> Lease:
    serve_stream = ServeStream(lease_chunks(server, start, ttl_s))
    return Lease(serve_stream, await anext(serve_stream), time.monotonic() + ttl_s)


def test_a_leased_stream_sends_its_request_with_the_ticket_and_reads_the_chunks():
    async def main():
        server, conns, got = RelayServer(), RelayConnections(), []
        lease = await _lease(server, _started(got, 4))
        assert got == []  # the lease alone starts nothing
        chunks = await collect(LeasedStream(lease, ("the request", {"traceparent": "x"}), conns))
        assert got == [("the request", {"traceparent": "x"})]
        assert [c.text for c in chunks] == ["t0 ", "t1 ", "t2 ", "t3 "] and chunks[-1].finish_reason == "stop"
        second = await _lease(server, _started(got, 2))  # the kept-alive connection carries the next lease
        assert len(await collect(LeasedStream(second, ("again", None), conns))) == 2
        await asyncio.sleep(0.05)
        assert server.channels == {}
        await server.aclose()
    run(main())


def test_an_unused_lease_ends_after_its_ttl_without_starting_anything():
    async def main():
        server, got = RelayServer(), []
        serve_stream = ServeStream(lease_chunks(server, _started(got), ttl_s=0.2))
        assert isinstance(await anext(serve_stream), RelayTicket)
        began = time.monotonic()
        rest = [item async for item in serve_stream]
        assert rest == [] and 0.15 < time.monotonic() - began < 2 and got == []
        assert server.channels == {}
        await server.aclose()
    run(main())


def test_a_taken_lease_refuses_a_second_request():
    async def main():
        server, conns, got = RelayServer(), RelayConnections(), []
        lease = await _lease(server, _started(got, 50, delay=0.01))
        first = LeasedStream(lease, ("one", None), conns)
        assert isinstance(await anext(first), GenerationChunk)
        again = LeasedStream(Lease(ServeStream(engine(0)), lease.ticket, lease.expires), ("two", None), conns)
        try:
            await anext(again)
            raise AssertionError("a second request under one lease ticket was accepted")
        except RelayBroken as exc:
            assert "already taken" in str(exc)
        first.cancel()
        assert got == [("one", None)]
        await server.aclose()
    run(main())


def test_cancelling_a_leased_stream_closes_the_engine_request():
    async def main():
        server, conns, closed = RelayServer(), RelayConnections(), []
        lease = await _lease(server, lambda payload: engine(1000, delay=0.005, closed=closed))
        stream = LeasedStream(lease, ("long", None), conns)
        for _ in range(3):
            await anext(stream)
        stream.cancel()
        for _ in range(100):
            if closed:
                break
            await asyncio.sleep(0.02)
        assert closed == [True] and lease.serve_stream.cancelled
        await server.aclose()
    run(main())


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _opener(opened: list, fail: bool = False):
    def open_lease(pool: str, ttl_s: float):
        name = f"{pool}-{len(opened)}"

        async def gen():
            if fail:
                raise ConnectionError("no replica")
            yield RelayTicket("127.0.0.1", 1, name)
            await asyncio.sleep(3600)
        stream = ServeStream(gen())
        opened.append(stream)
        return stream
    return open_lease


def test_pool_leases_miss_first_then_hand_out_a_ready_one_and_renew():
    async def main():
        opened, clock = [], Clock()
        leases = PoolLeases(_opener(opened), size=1, ttl_s=30, clock=clock)
        assert leases.take("small") is None and leases.counts["missed"] == 1  # none yet: the plain Serve call
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert leases.ready("small") == 1 and leases.ready("large") == 0
        lease = leases.take("small")
        assert lease is not None and lease.ticket.ticket == "small-0"
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert leases.ready("small") == 1 and len(opened) == 2  # renewed at once
        clock.now += 29.5  # inside the safety margin of its end: not handed out, cancelled
        assert leases.take("small") is None and leases.counts["expired"] == 1 and opened[1].cancelled
        leases.close()
    run(main())


def test_an_idle_pool_lets_its_leases_expire_and_holds_none():
    async def main():
        opened = []
        leases = PoolLeases(_opener(opened), size=2, ttl_s=0.3)
        leases.take("small")  # t=0: a miss; books two
        await asyncio.sleep(0.1)
        assert leases.ready("small") == 2 and len(opened) == 2
        assert leases.take("small") is not None  # t=0.1: takes one, books one more (ends at 0.4)
        await asyncio.sleep(0.25)  # t=0.35: the other first one ended with traffic 0.25 s ago: renewed
        assert len(opened) == 4 and leases.counts["expired"] == 1
        await asyncio.sleep(0.6)  # t=0.95: the rest ended with no traffic for longer than the ttl: none booked
        assert leases.ready("small") == 0 and len(opened) == 4 and leases.counts["expired"] == 3
        assert all(s.cancelled for k, s in enumerate(opened) if k != 0)  # every unused lease's call was ended
    run(main())


def test_a_pool_whose_lease_call_fails_falls_back_to_plain_calls():
    async def main():
        leases = PoolLeases(_opener([], fail=True), size=2, ttl_s=30)
        assert leases.take("small") is None
        await asyncio.sleep(0.01)
        assert leases.ready("small") == 0 and leases.counts["failed"] == 2
        assert leases.take("small") is None  # tries again, still nothing ready
    run(main())


def test_a_refused_lease_request_is_read_whole_so_the_connection_stays_in_step():
    async def main():
        server, got = RelayServer(), []
        await server.start()
        good = await _lease(server, _started(got, 2))
        replica_side = asyncio.ensure_future(collect(good.serve_stream))  # the Serve call runs on (as its handle)
        reader, writer = await asyncio.open_connection(server.host, server.port)
        # an expired lease's ticket with its request frame (which holds a newline), then a live lease's
        writer.write(f"{LEASE_MARK}expired\n".encode() + _frame(("request", ("a\nb", None))))
        writer.write(f"{LEASE_MARK}{good.ticket.ticket}\n".encode() + _frame(("request", ("live", None))))
        kind, value = await _read_frame(reader)
        assert kind == "error" and "unknown or expired" in str(value)
        frames = [await _read_frame(reader) for _ in range(3)]
        assert [k for k, _ in frames] == ["chunk", "chunk", "end"] and got == [("live", None)]
        writer.close()
        await replica_side
        await server.aclose()
    run(main())


class ReplicaCall:
    """A Serve call as the replica runs it: the generator goes on by itself (a lease's ttl runs out there)."""

    _DONE = object()

    def __init__(self, gen) -> None:
        self.queue: asyncio.Queue = asyncio.Queue()
        self.cancelled = False
        self.task = asyncio.ensure_future(self._run(gen))

    async def _run(self, gen) -> None:
        async for item in gen:
            self.queue.put_nowait(item)
        self.queue.put_nowait(self._DONE)

    def __aiter__(self):
        return self

    async def __anext__(self):
        item = await self.queue.get()
        if item is self._DONE:
            raise StopAsyncIteration
        return item

    def cancel(self) -> None:
        self.cancelled = True
        self.task.cancel()


async def _running_lease(server: RelayServer, start, ttl_s: float) -> Lease:
    call = ReplicaCall(lease_chunks(server, start, ttl_s))
    return Lease(call, await anext(call), time.monotonic() + ttl_s)


def test_an_error_frame_does_not_return_the_connection_to_the_pool():
    async def main():
        server, conns = RelayServer(), RelayConnections()
        lease = await _running_lease(server, _started([], 2), ttl_s=0.05)
        await asyncio.sleep(0.2)  # the replica dropped it; the ingress did not know
        with_stale = LeasedStream(lease, ("late", None), conns)
        try:
            await anext(with_stale)
            raise AssertionError("an expired lease took a request")
        except RelayBroken:
            pass
        assert sum(len(idle) for idle in conns._idle.values()) == 0
        await server.aclose()
    run(main())


def test_a_lease_gone_before_its_first_item_goes_on_as_the_plain_call():
    async def main():
        server, conns, got, misses = RelayServer(), RelayConnections(), [], []
        lease = await _running_lease(server, _started(got, 2), ttl_s=0.05)
        await asyncio.sleep(0.2)
        stream = LeaseOrCall(LeasedStream(lease, ("late", None), conns),
                             lambda: RelayStream(ServeStream(relay_chunks(server, engine(3))), conns),
                             lambda: misses.append(1))
        chunks = await collect(stream)
        assert [c.text for c in chunks] == ["t0 ", "t1 ", "t2 "] and misses == [1] and got == []
        await server.aclose()
    run(main())


def test_a_failure_after_the_first_item_is_the_streams_own():
    async def main():
        server, conns, plain = RelayServer(), RelayConnections(), []
        lease = await _lease(server, lambda payload: engine(3, fail_at=1, exc=RelayBroken("mid-stream")))
        stream = LeaseOrCall(LeasedStream(lease, ("x", None), conns), lambda: plain.append(1) or None)
        assert (await anext(stream)).text == "t0 "
        try:
            await anext(stream)
            raise AssertionError("the mid-stream failure was hidden")
        except RelayBroken:
            pass
        assert plain == []  # half an answer is never restarted elsewhere
        await server.aclose()
    run(main())


def test_a_lease_ends_counting_from_its_call_not_its_tickets_arrival():
    async def main():
        clock = Clock()

        def open_lease(pool: str, ttl_s: float):
            async def gen():
                clock.now += 5.0  # a slow trip back: the replica's wait began before the ticket arrived
                yield RelayTicket("127.0.0.1", 1, "t")
                await asyncio.sleep(3600)
            return ServeStream(gen())
        leases = PoolLeases(open_lease, size=1, ttl_s=30, clock=clock)
        leases.take("small")
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        clock.now += 24.5  # 29.5 s after the call (24.5 after the ticket): inside the margin, not handed out
        assert leases.take("small") is None and leases.counts["expired"] == 1
        leases.close()
    run(main())


def test_after_an_expired_lease_the_next_leases_on_the_pooled_connection_get_their_own_answers():
    async def main():
        server, conns, got = RelayServer(), RelayConnections(), []
        stale = await _running_lease(server, _started(got, 2), ttl_s=0.05)
        await asyncio.sleep(0.2)
        try:
            await collect(LeasedStream(stale, ("late", None), conns))
            raise AssertionError("an expired lease took a request")
        except RelayBroken:
            pass
        answers = []
        for n in (3, 4, 5):  # before the fix the stale lease's leftover bytes answered these with errors
            lease = await _running_lease(server, _started(got, n), ttl_s=5)
            answers.append(len(await collect(LeasedStream(lease, (f"req-{n}", None), conns))))
        assert answers == [3, 4, 5] and got == [("req-3", None), ("req-4", None), ("req-5", None)]
        await server.aclose()
    run(main())


def test_every_lease_outcome_is_reported_with_its_pool():
    async def main():
        seen, clock = [], Clock()
        leases = PoolLeases(_opener([]), size=1, ttl_s=30, clock=clock, observe=lambda *a: seen.append(a))
        leases.take("small")  # none ready yet
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert leases.take("small") is not None
        leases.stale("small")
        failing = PoolLeases(_opener([], fail=True), size=1, ttl_s=30, observe=lambda *a: seen.append(a))
        failing.take("large")
        await asyncio.sleep(0.01)
        leases.close()
        return seen

    seen = run(main())
    assert seen == [("small", "missed"), ("small", "taken"), ("small", "stale"), ("large", "missed"),
                    ("large", "failed")]
