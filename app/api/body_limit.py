"""Bounded request-body reading, and the drain that lets a 413 reach the client (issue 14 #2).

``read_body_bounded`` stops at the first chunk that passes the limit, so a chunked body (no
Content-Length) is never read whole before its size is checked. ``drain`` reads and discards what is
left of a rejected body, bounded in bytes and time: a server that answers 413 and closes while the
client is still sending leaves unread bytes in its socket, the kernel then resets the connection and
the client sees ECONNRESET instead of the 413 (loadtests/body_limit_repro.py shows it with plain
uvicorn). Pure asyncio: the caller passes an async iterator of body chunks (``request.stream()``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

from app.errors import PayloadTooLargeError

DRAIN_MAX_BYTES = 64 << 20  # read at most this much of a rejected body before giving up
DRAIN_MAX_SECONDS = 10.0


def too_large(limit: int, size: int | None = None) -> PayloadTooLargeError:
    """The 413. No ``Connection: close`` on purpose: uvicorn closes at once on it, with the unread rest of
    the body in the socket, which is exactly what resets the client (loadtests/body_limit_repro.py)."""
    told = f"Request body is {size} bytes" if size is not None else "Request body exceeds the limit"
    return PayloadTooLargeError(f"{told}; the limit is {limit} bytes.")


async def read_body_bounded(receive_iter: AsyncIterator[bytes], limit: int) -> bytes:
    """The whole body, or PayloadTooLargeError as soon as more than ``limit`` bytes have arrived
    (at most one chunk past the limit is held in memory)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in receive_iter:
        size += len(chunk)
        if size > limit:
            raise too_large(limit)
        if chunk:
            chunks.append(chunk)
    return b"".join(chunks)


async def drain(receive_iter: AsyncIterator[bytes], max_bytes: int = DRAIN_MAX_BYTES,
                max_seconds: float = DRAIN_MAX_SECONDS) -> tuple[int, bool]:
    """Read and discard the rest of a body; stop after ``max_bytes`` or ``max_seconds``.
    Returns (bytes discarded, whether the body ended): if not, the client may still see a reset."""
    deadline = time.monotonic() + max_seconds
    seen = 0
    iterator = receive_iter.__aiter__()
    while seen <= max_bytes:
        left = deadline - time.monotonic()
        if left <= 0:
            return seen, False
        try:
            chunk = await asyncio.wait_for(iterator.__anext__(), left)
        except StopAsyncIteration:
            return seen, True
        except TimeoutError:
            return seen, False
        except Exception:  # the client went away: nothing left to protect
            return seen, True
        seen += len(chunk)
    return seen, False
