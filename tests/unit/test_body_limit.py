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
