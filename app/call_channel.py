"""Calls to a single-replica deployment over its own socket: no Serve handle hop per call.

The cache deployment has exactly one replica (it holds the index), so Serve's routing has nothing to choose
and a handle call is pure overhead: about 4-5 ms of latency and a gRPC round trip of CPU on these machines for
0.1-0.5 ms of work. The replica runs a ``ChannelServer`` on an ephemeral port; the ingress learns its
``ChannelEndpoint`` with one handle call, then sends ``(method, args)`` frames over pooled keep-alive
connections and reads ``("ok", result)`` or ``("error", exc)`` back (length-prefixed pickles, as
``app.stream_relay``). The endpoint's random token is the capability: a connection is read only after its first
line matched it (constant-time compare), so nothing else on the network can make the replica unpickle; the
replica answers a matched token with a ``ready`` frame, so a client never takes another server that came up on
a reused port for the replica.

``ChannelClient.call`` raises ``ChannelBroken`` when the socket fails (replica restarted, port gone); the caller
then makes the handle call and the next call asks for the endpoint again. No ``ray`` import.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from app.stream_relay import _frame, _read_frame

logger = logging.getLogger(__name__)
HANDSHAKE_TIMEOUT_S = 5.0
_READY_ITEM = ("ready", None)
_READY = _frame(_READY_ITEM)


@dataclass(frozen=True)
class ChannelEndpoint:
    host: str
    port: int
    token: str

    def __repr__(self) -> str:  # the token is a capability: never in a log line
        return f"ChannelEndpoint({self.host}:{self.port})"


class ChannelBroken(ConnectionError):
    """The channel's socket failed; the call may not have run (the caller falls back to the handle)."""


class ChannelServer:
    """Replica side: serves ``handlers[method](*args)`` for connections that sent the token first."""

    def __init__(self, handlers: dict[str, Callable[..., Awaitable[Any]]], host: str = "127.0.0.1") -> None:
        self.handlers = handlers
        self.host = host
        self.token = secrets.token_hex(16)
        self.port = 0
        self.served = 0  # calls answered over the channel
        self._starting: asyncio.Future | None = None
        self._server: asyncio.base_events.Server | None = None

    async def endpoint(self) -> ChannelEndpoint:
        """Start once (concurrent first callers share it); the address and token to hand to clients."""
        if self._starting is None:
            self._starting = asyncio.ensure_future(asyncio.start_server(self._serve, self.host, 0))
        self._server = await asyncio.shield(self._starting)
        self.port = self._server.sockets[0].getsockname()[1]
        return ChannelEndpoint(self.host, self.port, self.token)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await reader.readline()
            if not hmac.compare_digest(line.strip(), self.token.encode()):
                return  # not ours: nothing of it is unpickled
            writer.write(_READY)  # the client knows it reached this server (not another one on a reused port)
            while True:
                try:
                    method, args = await _read_frame(reader)
                except asyncio.IncompleteReadError:
                    return  # the client closed its idle connection
                handler = self.handlers.get(method)
                try:
                    if handler is None:
                        raise AttributeError(f"no channel method {method!r}")
                    reply: tuple[str, Any] = ("ok", await handler(*args))
                    self.served += 1
                except Exception as exc:
                    reply = ("error", exc)
                writer.write(_frame(reply))
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            writer.close()

    async def aclose(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = self._starting = None


class ChannelClient:
    """Ingress side: ``await call(method, *args)`` over a pooled connection to the endpoint ``discover`` gives."""

    def __init__(self, discover: Callable[[], Awaitable[ChannelEndpoint]], max_idle: int = 64) -> None:
        self.discover = discover
        self.max_idle = max_idle
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self._endpoint: asyncio.Future | None = None
        self._for: ChannelEndpoint | None = None  # the endpoint the idle connections belong to
        self.counts = {"calls": 0, "broken": 0}

    async def _get_endpoint(self) -> ChannelEndpoint:
        if self._endpoint is None or (self._endpoint.done() and self._endpoint.exception() is not None):
            self._endpoint = asyncio.ensure_future(self.discover())
        return await asyncio.shield(self._endpoint)

    def forget(self) -> None:
        """The next call asks for the endpoint again (the replica may have moved); idle connections close."""
        self._endpoint = None
        self.forget_idle()

    async def _acquire(self, ep: ChannelEndpoint, fresh: bool) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self._for != ep:
            self.forget_idle()
            self._for = ep
        while self._idle and not fresh:
            reader, writer = self._idle.pop()
            if not reader.at_eof() and not writer.is_closing():
                return reader, writer
            writer.close()
        reader, writer = await asyncio.open_connection(ep.host, ep.port)
        writer.write(ep.token.encode() + b"\n")
        try:
            if await asyncio.wait_for(_read_frame(reader), HANDSHAKE_TIMEOUT_S) != _READY_ITEM:
                raise ConnectionError("not the channel endpoint")  # e.g. another server on a reused port
        except BaseException:
            writer.close()
            raise
        return reader, writer

    def forget_idle(self) -> None:
        while self._idle:
            self._idle.pop()[1].close()

    def _release(self, conn: tuple[asyncio.StreamReader, asyncio.StreamWriter]) -> None:
        if len(self._idle) < self.max_idle:
            self._idle.append(conn)
        else:
            conn[1].close()

    async def call(self, method: str, *args: Any) -> Any:
        """``handlers[method](*args)`` on the replica; its exception is raised here as it was raised there."""
        try:
            ep = await self._get_endpoint()
        except Exception as exc:
            self.forget()
            raise ChannelBroken(f"no channel endpoint: {type(exc).__name__}") from None
        self.counts["calls"] += 1
        for fresh in (False, True):  # a pooled connection the replica closed meanwhile: one fresh retry
            conn = None
            try:
                conn = await self._acquire(ep, fresh)
                conn[1].write(_frame((method, args)))
                kind, value = await _read_frame(conn[0])
            except (ConnectionError, asyncio.IncompleteReadError, OSError):
                if conn is not None:
                    conn[1].close()
                if fresh:
                    self.counts["broken"] += 1
                    self.forget()
                    raise ChannelBroken(f"channel to {ep.host}:{ep.port} failed") from None
                continue
            except BaseException:  # cancelled mid-call: a reply may still come, so the connection is not reused
                if conn is not None:
                    conn[1].close()
                raise
            self._release(conn)
            if kind == "error":
                raise value
            return value
        raise ChannelBroken("unreachable")  # pragma: no cover

    def close(self) -> None:
        self.forget()
