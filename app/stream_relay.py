"""Token streams off Serve handles: a pool replica relays its chunks to the ingress over a plain TCP socket.

The ingress still calls the pool through its Serve handle (``ModelPool.relay``), so Serve picks the
replica, counts the request for autoscaling and health, and cancels it when the client goes away;
but that call carries two small items (a ticket, then the end) instead of every window of tokens.
The ticket names a channel on the replica's ``RelayServer``; the ingress connects (keep-alive,
pooled per replica) and reads length-prefixed frames: pickled ``GenerationChunk`` objects, then an end
marker, or the exception the engine raised. One write per batch of ready frames, one read per frame.
No ``ray`` import: the deployment supplies the address and the handle's stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import pickle
import secrets
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger(__name__)
_LEN = struct.Struct("!I")
_END = ("end", None)
_CLOSED = ("closed", None)
LEASE_MARK = "+"  # a ticket line starting with it carries a lease's request frame right after it
MAX_REQUEST_FRAME = 64 << 20  # a lease's request frame is read before its ticket is checked: bounded


@dataclass(frozen=True)
class RelayTicket:
    host: str
    port: int
    ticket: str


class RelayBroken(ConnectionError):
    """The relay socket or channel failed before the stream ended."""


@dataclass
class Channel:
    ticket: str
    queue: asyncio.Queue = field(default_factory=asyncio.Queue)
    delivered: asyncio.Event = field(default_factory=asyncio.Event)
    lost: bool = False
    request: asyncio.Future | None = None  # a lease's: the request that arrives over the socket with the ticket

    def put(self, chunk: Any) -> None:
        self.queue.put_nowait(("chunk", chunk))

    def end(self) -> None:
        self.queue.put_nowait(_END)

    def fail(self, exc: BaseException) -> None:
        self.queue.put_nowait(("error", exc))


def _frame(item: tuple[str, Any]) -> bytes:
    try:
        body = pickle.dumps(item, protocol=5)
    except Exception as exc:  # an unpicklable exception still reaches the caller, as a RelayBroken
        body = pickle.dumps(("error", RelayBroken(f"{type(item[1]).__name__}: {exc}")), protocol=5)
    return _LEN.pack(len(body)) + body


class RelayServer:
    """Replica side: one TCP server per replica; each connection serves one ticket after another."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = 0
        self.channels: dict[str, Channel] = {}
        self._server: asyncio.base_events.Server | None = None
        self._starting: asyncio.Future | None = None

    async def start(self) -> None:
        """Idempotent; concurrent first callers share one start."""
        if self._starting is None:
            self._starting = asyncio.ensure_future(asyncio.start_server(self._serve, self.host, 0))
        self._server = await asyncio.shield(self._starting)
        self.port = self._server.sockets[0].getsockname()[1]

    def open(self, lease: bool = False) -> Channel:
        channel = Channel(secrets.token_hex(16))
        if lease:
            channel.request = asyncio.get_running_loop().create_future()
        self.channels[channel.ticket] = channel
        return channel

    def ticket(self, channel: Channel) -> RelayTicket:
        return RelayTicket(self.host, self.port, channel.ticket)

    def close(self, channel: Channel) -> None:
        if self.channels.pop(channel.ticket, None) is not None:
            channel.queue.put_nowait(_CLOSED)  # a writer still waiting on it moves on

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                raw = line.strip().decode("ascii", "replace")
                leased = raw.startswith(LEASE_MARK)  # a lease's request frame follows its ticket line: read it
                body = await _read_frame_bytes(reader, MAX_REQUEST_FRAME) if leased else None  # (lines stay aligned)
                channel = self.channels.get(raw[len(LEASE_MARK):] if leased else raw)
                problem = None
                if channel is None:
                    problem = "unknown or expired relay ticket"
                elif leased != (channel.request is not None):
                    problem = "relay ticket used the wrong way (lease vs call)"
                elif leased and channel.request.done():
                    problem = "relay lease already taken"
                if problem is not None:
                    writer.write(_frame(("error", RelayBroken(problem))))
                    await writer.drain()
                    continue
                if leased:  # unpickled only now: the ticket this replica issued is the capability
                    channel.request.set_result(pickle.loads(body)[1])
                await self._pump(channel, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def _pump(self, channel: Channel, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                item = await channel.queue.get()
                frames = [item]
                while frames[-1][0] == "chunk" and not channel.queue.empty():
                    frames.append(channel.queue.get_nowait())
                writer.write(b"".join(_frame(f if f is not _CLOSED else _END) for f in frames))
                await writer.drain()
                if frames[-1][0] != "chunk":
                    return
        except BaseException:
            channel.lost = True  # the generator stops the engine request
            raise
        finally:
            channel.delivered.set()

    async def aclose(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = self._starting = None


class _Feed:
    """Chunks into a channel from a task of their own, started at once (the engine request begins now)."""

    def __init__(self, channel: Channel, chunks: AsyncIterator[Any]) -> None:
        self.channel, self.chunks, self.last = channel, chunks, None
        self.task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        try:
            async for chunk in self.chunks:
                if self.channel.lost:
                    return
                self.last = chunk
                self.channel.put(chunk)
            self.channel.end()
        except Exception as exc:
            self.channel.fail(exc)

    async def finish(self, delivery_timeout_s: float, on_last: Any) -> None:
        """Until the engine ended and its frames were written (or the reader left, or the timeout passed)."""
        await self.task
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.channel.delivered.wait(), delivery_timeout_s)
        if on_last is not None and self.last is not None:
            on_last(self.last)

    async def close(self) -> None:
        if not self.task.done():
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.task
        aclose = getattr(self.chunks, "aclose", None)
        if aclose is not None:
            await aclose()


async def deliver(server: RelayServer, channel: Channel, chunks: AsyncIterator[Any], delivery_timeout_s: float,
                  on_last: Any = None) -> None:
    """Feed ``chunks`` into ``channel`` until they were delivered; leaving early closes them (engine abort)."""
    feed = _Feed(channel, chunks)
    try:
        await feed.finish(delivery_timeout_s, on_last)
    finally:
        await feed.close()


async def relay_chunks(server: RelayServer, chunks: AsyncIterator[Any], delivery_timeout_s: float = 60.0,
                       on_last: Any = None) -> AsyncIterator[RelayTicket]:
    """Replica side of one request: start feeding ``chunks`` into a channel, yield its ticket, end when done.

    The engine request starts before the ticket goes back (its prefill overlaps the ticket's trip and the
    ingress's connect; the channel buffers what comes first). Ends once the frames were written (or the
    ingress went away, or ``delivery_timeout_s`` passed), so Serve counts the request until then. Leaving
    early closes ``chunks`` (the engine aborts the request).
    """
    await server.start()
    channel = server.open()
    feed = _Feed(channel, chunks)
    try:
        yield server.ticket(channel)
        await feed.finish(delivery_timeout_s, on_last)
    finally:
        await feed.close()
        server.close(channel)


class WrappingStream:
    """Base of iterators that wrap another stream (``self.stream``): ``cancel`` and ``aclose`` go through to it."""

    stream: Any

    def __aiter__(self) -> WrappingStream:
        return self

    def cancel(self) -> None:
        cancel = getattr(self.stream, "cancel", None)
        if cancel is not None:
            cancel()

    async def aclose(self) -> None:
        aclose = getattr(self.stream, "aclose", None)
        if aclose is not None:
            await aclose()
        else:
            self.cancel()


class RelayConnections:
    """Ingress side: idle keep-alive connections per replica address."""

    def __init__(self, max_idle_per_host: int = 64) -> None:
        self.max_idle = max_idle_per_host
        self._idle: dict[tuple[str, int], list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]] = {}

    async def acquire(self, host: str, port: int, fresh: bool = False):
        idle = self._idle.get((host, port), [])
        while idle and not fresh:
            reader, writer = idle.pop()
            if not reader.at_eof() and not writer.is_closing():
                return reader, writer
            writer.close()
        return await asyncio.open_connection(host, port)

    def release(self, host: str, port: int, conn) -> None:
        idle = self._idle.setdefault((host, port), [])
        if len(idle) < self.max_idle:
            idle.append(conn)
        else:
            conn[1].close()


async def _read_frame_bytes(reader: asyncio.StreamReader, max_size: int | None = None) -> bytes:
    (size,) = _LEN.unpack(await reader.readexactly(_LEN.size))
    if max_size is not None and size > max_size:
        raise ConnectionError(f"relay frame of {size} bytes is over {max_size}")  # the connection ends
    return await reader.readexactly(size)


async def _read_frame(reader: asyncio.StreamReader) -> tuple[str, Any]:
    return pickle.loads(await _read_frame_bytes(reader))


class RelayStream:
    """Async iterator of chunks for one request; ``cancel()`` aborts it (the Serve call and the socket)."""

    def __init__(self, serve_stream: Any, connections: RelayConnections, ticket: RelayTicket | None = None,
                 payload: bytes = b"") -> None:
        self.serve_stream = serve_stream  # yields one RelayTicket (unless ``ticket`` came ahead: a lease), then ends
        self.connections = connections
        self._conn = None
        self._ticket = ticket
        self._payload = payload  # a lease's request frame, written right after the ticket
        self._end: asyncio.Future | None = None
        self._done = False

    def __aiter__(self) -> AsyncIterator[Any]:
        return self

    async def _connect(self) -> None:
        if self._ticket is None:
            self._ticket = await anext(self.serve_stream)
        self._end = asyncio.ensure_future(self._drain_serve())
        self._end.add_done_callback(lambda f: f.cancelled() or f.exception())  # retrieved: no warning
        t = self._ticket
        for fresh in (False, True):  # a pooled connection the replica closed meanwhile: one fresh retry
            try:
                self._conn = await self.connections.acquire(t.host, t.port, fresh=fresh)
                line = (LEASE_MARK + t.ticket if self._payload else t.ticket).encode() + b"\n"
                self._conn[1].write(line + self._payload)
                first = await _read_frame(self._conn[0])
                self._pending = first
                return
            except (ConnectionError, asyncio.IncompleteReadError, OSError):
                self._close_conn()
                if fresh:
                    raise RelayBroken("relay connection to the pool replica failed") from None

    async def _drain_serve(self) -> None:
        with contextlib.suppress(StopAsyncIteration):
            while True:
                await anext(self.serve_stream)

    async def __anext__(self) -> Any:
        if self._done:
            raise StopAsyncIteration
        try:
            if self._conn is None:
                await self._connect()
                kind, value = self._pending
            else:
                kind, value = await _read_frame(self._conn[0])
        except (ConnectionError, asyncio.IncompleteReadError, OSError) as exc:
            self._close_conn()
            await self._raise_serve_error()
            raise RelayBroken(f"relay stream broke: {type(exc).__name__}") from None
        if kind == "chunk":
            return value
        self._done = True
        self._finish(reuse=kind == "end")  # only a cleanly ended exchange leaves the connection reusable
        if kind == "error":
            raise value
        raise StopAsyncIteration

    async def _raise_serve_error(self) -> None:
        """Prefer the replica's own failure (e.g. it died) over the socket's symptom."""
        if self._end is not None:
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(self._end), 0.5)
            if self._end.done() and not self._end.cancelled() and self._end.exception() is not None:
                raise self._end.exception()

    def _finish(self, reuse: bool) -> None:
        if self._conn is not None and reuse and self._ticket is not None:
            self.connections.release(self._ticket.host, self._ticket.port, self._conn)
            self._conn = None
        self._close_conn()

    def _close_conn(self) -> None:
        if self._conn is not None:
            self._conn[1].close()
            self._conn = None

    def cancel(self) -> None:
        self._done = True
        self._close_conn()  # mid-stream: the connection is not reusable
        cancel = getattr(self.serve_stream, "cancel", None)
        if cancel is not None:
            cancel()
        if self._end is not None and not self._end.done():
            self._end.cancel()

    async def aclose(self) -> None:
        if not self._done:
            self.cancel()
