"""The pool → ingress token relay over real loopback sockets (app/stream_relay.py)."""

from __future__ import annotations

import asyncio

import pytest

from app.errors import InvalidRequestError
from app.generation import GenerationChunk
from app.stream_relay import RelayBroken, RelayConnections, RelayServer, RelayStream, relay_chunks
from tests.unit.socket_helpers import count_accepts


class ServeStream:
    """What a Serve streaming handle call looks like to the ingress: an async iterator with cancel()."""

    def __init__(self, gen) -> None:
        self.gen = gen
        self.cancelled = False

    def __aiter__(self):
        return self

    async def __anext__(self):
        return await self.gen.__anext__()

    def cancel(self) -> None:
        self.cancelled = True
        self.closing = asyncio.ensure_future(self.gen.aclose())


async def engine(n: int, fail_at: int | None = None, exc: Exception | None = None, delay: float = 0.0,
                 closed: list | None = None):
    try:
        for i in range(n):
            if fail_at == i:
                raise exc or RuntimeError("engine failed")
            await asyncio.sleep(delay)
            yield GenerationChunk(f"t{i} ", "stop" if i == n - 1 else None, 3, i + 1, "m")
    finally:
        if closed is not None:
            closed.append(True)


def run(coro):
    return asyncio.run(coro)


async def collect(stream) -> list[GenerationChunk]:
    return [c async for c in stream]


def test_chunks_arrive_in_order_and_the_connection_is_reused():
    async def main():
        server, conns = RelayServer(), RelayConnections()
        accepted = count_accepts(server)
        first = await collect(RelayStream(ServeStream(relay_chunks(server, engine(5))), conns))
        second = await collect(RelayStream(ServeStream(relay_chunks(server, engine(3))), conns))
        await asyncio.sleep(0.05)
        assert "".join(c.text for c in first) == "t0 t1 t2 t3 t4 "
        assert first[-1].finish_reason == "stop" and first[-1].completion_tokens == 5
        assert [c.text for c in second] == ["t0 ", "t1 ", "t2 "]
        assert len(accepted) == 1  # keep-alive: the second request took the pooled connection
        assert server.channels == {}  # both channels closed once delivered

    run(main())


def test_engine_error_reaches_the_ingress_as_the_same_exception():
    async def main():
        server, conns = RelayServer(), RelayConnections()
        err = InvalidRequestError("prompt too long", code="context_length_exceeded")
        stream = RelayStream(ServeStream(relay_chunks(server, engine(4, fail_at=2, exc=err))), conns)
        got = [await anext(stream), await anext(stream)]
        with pytest.raises(InvalidRequestError) as info:
            await anext(stream)
        assert [c.text for c in got] == ["t0 ", "t1 "]
        assert info.value.code == "context_length_exceeded"
        # the connection is still good for the next request
        assert len(await collect(RelayStream(ServeStream(relay_chunks(server, engine(2))), conns))) == 2

    run(main())


def test_cancel_mid_stream_stops_the_engine():
    async def main():
        server, conns = RelayServer(), RelayConnections()
        closed: list = []
        serve_stream = ServeStream(relay_chunks(server, engine(1000, delay=0.005, closed=closed)))
        stream = RelayStream(serve_stream, conns)
        assert (await anext(stream)).text == "t0 "
        stream.cancel()
        for _ in range(100):
            if closed:
                break
            await asyncio.sleep(0.01)
        assert closed and serve_stream.cancelled
        assert server.channels == {}

    run(main())


def test_a_stale_pooled_connection_is_replaced():
    async def main():
        server, conns = RelayServer(), RelayConnections()
        await collect(RelayStream(ServeStream(relay_chunks(server, engine(2))), conns))
        await server.aclose()  # the old listener goes away; pooled connection closed by the peer
        for (_, _), idle in conns._idle.items():
            for _, writer in idle:
                writer.transport.abort()
        server2 = RelayServer()
        out = await collect(RelayStream(ServeStream(relay_chunks(server2, engine(3))), conns))
        assert len(out) == 3

    run(main())


def test_unknown_ticket_is_refused():
    async def main():
        server = RelayServer()
        await server.start()
        reader, writer = await asyncio.open_connection(server.host, server.port)
        writer.write(b"not-a-ticket\n")
        from app.stream_relay import _read_frame

        kind, value = await _read_frame(reader)
        assert kind == "error" and isinstance(value, RelayBroken)
        writer.close()

    run(main())


def test_replica_death_mid_stream_is_a_connection_error():
    async def main():
        server, conns = RelayServer(), RelayConnections()
        writers = []
        serve = server._serve

        async def capturing(reader, writer):
            writers.append(writer)
            await serve(reader, writer)

        server._serve = capturing
        stream = RelayStream(ServeStream(relay_chunks(server, engine(1000, delay=0.005))), conns)
        await anext(stream)
        for writer in writers:  # what the ingress sees when the replica process dies: the socket is reset
            writer.transport.abort()
        with pytest.raises(ConnectionError):
            for _ in range(2000):
                await anext(stream)

    run(main())


def test_the_engine_starts_before_the_ticket_is_taken_further():
    """Prefill overlaps the ticket's trip back to the ingress: the engine is asked before anyone reads."""

    async def main():
        server, started, closed = RelayServer(), [], []

        async def recording():
            started.append(True)
            async for chunk in engine(3, closed=closed):
                yield chunk

        gen = relay_chunks(server, recording())
        ticket = await anext(gen)
        await asyncio.sleep(0)
        assert started == [True] and ticket.ticket in server.channels
        await gen.aclose()  # the Serve call ends early: the engine request is closed, the channel dropped
        assert closed == [True] and ticket.ticket not in server.channels

    run(main())
