"""Pool leases (app/relay_lease.py): a Serve call booked ahead, its request sent over a real loopback relay socket."""

from __future__ import annotations

import asyncio
import time

from app.generation import GenerationChunk
from app.relay_lease import Lease, LeasedStream, PoolLeases, lease_chunks
from app.stream_relay import RelayBroken, RelayConnections, RelayServer, RelayTicket
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
