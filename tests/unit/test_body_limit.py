"""Bounded body reading and the bounded drain (app/api/body_limit.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from app.api.body_limit import drain, read_body_bounded
from app.errors import PayloadTooLargeError


class Body:
    """An endless (or finite) chunked body that counts what was pulled from it."""

    def __init__(self, chunk: int = 1024, total: int | None = None, delay: float = 0.0) -> None:
        self.chunk, self.total, self.delay, self.pulled = chunk, total, delay, 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while self.total is None or self.pulled < self.total:
            if self.delay:
                await asyncio.sleep(self.delay)
            n = self.chunk if self.total is None else min(self.chunk, self.total - self.pulled)
            self.pulled += n
            yield b"x" * n


def test_reads_a_body_within_the_limit() -> None:
    assert asyncio.run(read_body_bounded(Body(total=3000).__aiter__(), 3000)) == b"x" * 3000


def test_stops_at_the_first_chunk_past_the_limit_without_a_content_length() -> None:
    body = Body(chunk=1024)  # never ends: a chunked upload that would be read whole before
    with pytest.raises(PayloadTooLargeError) as info:
        asyncio.run(read_body_bounded(body.__aiter__(), 10_000))
    assert body.pulled == 10 * 1024  # one chunk past the limit, no more
    assert info.value.status_code == 413 and "connection" not in info.value.headers
    assert info.value.to_dict()["error"]["code"] == "request_too_large"


def test_drain_reads_the_rest_bounded_in_bytes_and_time() -> None:
    finite = Body(chunk=4096, total=100_000)
    assert asyncio.run(drain(finite.__aiter__())) == (100_000, True)
    endless = Body(chunk=4096)
    seen, ended = asyncio.run(drain(endless.__aiter__(), max_bytes=50_000))
    assert not ended and 50_000 < seen <= 50_000 + 4096
    slow = Body(chunk=10, delay=0.05)
    seen, ended = asyncio.run(drain(slow.__aiter__(), max_seconds=0.2))
    assert not ended and seen <= 50


# ---- read_json_body (app/api/completions.py): what the handlers call --------------------------------
ENDLESS = 100 << 20  # "endless" bodies end here, past the drain's bound, so a regression fails instead of hanging


class Receive:
    """An ASGI ``receive`` delivering ``payload`` in messages of ``chunk`` bytes (no payload: "endless")."""

    def __init__(self, payload: bytes | None = None, chunk: int = 65536) -> None:
        self.payload, self.chunk, self.pulled = payload, chunk, 0

    async def __call__(self) -> dict:
        if self.payload is not None:  # a finite body
            part, self.payload = self.payload[: self.chunk], self.payload[self.chunk :]
            self.pulled += len(part)
            return {"type": "http.request", "body": part, "more_body": bool(self.payload)}
        await asyncio.sleep(0)
        self.pulled += self.chunk
        return {"type": "http.request", "body": b"x" * self.chunk, "more_body": self.pulled < ENDLESS}


def request(receive: Receive, content_length: int | None = None):
    from starlette.requests import Request

    headers = [(b"content-type", b"application/json")]
    if content_length is not None:
        headers.append((b"content-length", str(content_length).encode()))
    return Request({"type": "http", "method": "POST", "path": "/v1/chat/completions", "headers": headers}, receive)


def test_read_json_body_parses_a_body_within_the_limit() -> None:
    from app.api.completions import read_json_body

    body = b'{"model": "small", "messages": []}'
    assert asyncio.run(read_json_body(request(Receive(body, chunk=7), len(body)), 1000)) == {
        "model": "small", "messages": []}


def test_an_endless_chunked_body_gets_its_413_after_a_bounded_read() -> None:
    """Before: ``await request.body()`` read a chunked body whole, so an endless one never got an answer."""
    from app.api.body_limit import DRAIN_MAX_BYTES
    from app.api.completions import read_json_body

    receive = Receive(chunk=65536)  # no Content-Length, "endless"
    with pytest.raises(PayloadTooLargeError) as info:
        asyncio.run(asyncio.wait_for(read_json_body(request(receive), 256 * 1024), 20))
    assert info.value.status_code == 413 and info.value.to_dict()["error"]["type"] == "invalid_request_error"
    assert receive.pulled <= 256 * 1024 + DRAIN_MAX_BYTES + 2 * 65536  # the limit, then the bounded drain


def test_an_oversized_content_length_is_drained_before_the_413() -> None:
    """The client is still sending: the rest is read (and dropped) so the 413 reaches it, no reset."""
    from app.api.completions import read_json_body

    receive = Receive(b"x" * 3_000_000, chunk=65536)
    with pytest.raises(PayloadTooLargeError) as info:
        asyncio.run(read_json_body(request(receive, 3_000_000), 256 * 1024))
    assert receive.pulled == 3_000_000 and not receive.payload  # the whole body was consumed
    assert "3000000 bytes" in info.value.message and "connection" not in {k.lower() for k in info.value.headers}


def test_the_413_reaches_a_raw_client_and_its_connection_stays_usable() -> None:
    """Real uvicorn (no Ray): a client that writes its whole 3 MB body before reading gets the JSON 413, then
    sends its next request on the same connection; chunked too."""
    import json
    import socket
    import threading

    import uvicorn
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from app.api.completions import error_json, read_json_body
    from app.errors import GatewayError

    async def chat(request):
        try:
            return JSONResponse({"keys": sorted(await read_json_body(request, 256 * 1024))})
        except GatewayError as err:
            return error_json(err)

    api = Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(api, host="127.0.0.1", port=port, log_level="error", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        for _ in range(200):
            if server.started:
                break
            threading.Event().wait(0.05)
        big = json.dumps({"model": "small", "messages": [{"role": "user", "content": "x" * 3_000_000}]}).encode()
        small = b'{"model": "small"}'
        head = "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
            reader = conn.makefile("rb")
            conn.sendall(f"{head}Content-Length: {len(big)}\r\n\r\n".encode() + big)
            status, body = _read_response(reader)
            assert status == 413 and body["error"]["code"] == "request_too_large"
            chunks = b"".join(b"%x\r\n%s\r\n" % (len(big[i:i + 65536]), big[i:i + 65536])
                              for i in range(0, len(big), 65536))
            conn.sendall(f"{head}Transfer-Encoding: chunked\r\n\r\n".encode() + chunks + b"0\r\n\r\n")
            status, body = _read_response(reader)
            assert status == 413 and body["error"]["type"] == "invalid_request_error"
            conn.sendall(f"{head}Content-Length: {len(small)}\r\n\r\n".encode() + small)  # same connection
            assert _read_response(reader) == (200, {"keys": ["model"]})
    finally:
        server.should_exit = True
        thread.join(10)


def _read_response(reader) -> tuple[int, dict]:
    import json

    status = int(reader.readline().split()[1])
    headers = {}
    while (line := reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode().partition(":")
        headers[name.strip().lower()] = value.strip()
    assert headers.get("connection") != "close"
    return status, json.loads(reader.read(int(headers["content-length"])))


def test_optional_bodies_are_bounded_too() -> None:
    """The admin routes (read before the admin check): empty is None, an endless body still gets its 413."""
    from app.api.completions import read_json_body_or_none

    assert asyncio.run(read_json_body_or_none(request(Receive(b"")), 1000)) is None
    assert asyncio.run(read_json_body_or_none(request(Receive(b'{"a": 1}')), 1000)) == {"a": 1}
    with pytest.raises(PayloadTooLargeError):
        asyncio.run(asyncio.wait_for(read_json_body_or_none(request(Receive()), 10_000), 20))
