"""The engine contract every pool backend implements."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator
from typing import Protocol

from app.generation import GenerationChunk, GenerationRequest, merge_chunks


class Engine(Protocol):
    model_name: str
    max_model_len: int

    def stream(self, req: GenerationRequest) -> AsyncIterator[GenerationChunk]:
        """Yield text deltas; the last chunk carries finish_reason and token counts."""
        ...

    async def check_health(self) -> None: ...

    def stats(self) -> dict[str, int]: ...

    def shutdown(self) -> None: ...


async def collect(chunks: AsyncIterator[GenerationChunk]) -> GenerationChunk:
    """Fold a chunk stream into one chunk holding the whole text (tool calls, logprobs) and the final counts."""
    parts = [chunk async for chunk in chunks]
    if not parts:
        return GenerationChunk()
    whole = merge_chunks(parts)
    return whole if len(parts) > 1 else dataclasses.replace(whole)


def merge(chunks: list[GenerationChunk]) -> GenerationChunk:
    """One chunk: the joined text, tool-call deltas and logprobs of ``chunks``, the state of the last."""
    return merge_chunks(chunks)


async def coalesce(chunks: AsyncIterator[GenerationChunk], window_s: float) -> AsyncIterator[GenerationChunk]:
    """Re-chunk a token stream: the first chunk at once, then at most one merged chunk per ``window_s``.

    Every item crossing a Ray handle costs a fixed overhead; merging the deltas produced in a short
    window keeps tokens/s close to the bare engine while TTFT is unchanged. Cancelling the consumer
    cancels the producer (which aborts the engine request).
    """
    if window_s <= 0:
        async for chunk in chunks:
            yield chunk
        return
    queue: asyncio.Queue[GenerationChunk | BaseException | None] = asyncio.Queue()

    async def produce() -> None:
        try:
            async for chunk in chunks:
                queue.put_nowait(chunk)
            queue.put_nowait(None)
        except Exception as exc:
            queue.put_nowait(exc)

    producer = asyncio.create_task(produce())
    try:
        first = True
        done = False
        while not done:
            item = await queue.get()
            items = [item]
            if not first:
                await asyncio.sleep(window_s)
            first = False
            while not queue.empty():
                items.append(queue.get_nowait())
            batch: list[GenerationChunk] = []
            for item in items:
                if item is None:
                    done = True
                elif isinstance(item, BaseException):
                    if batch:
                        yield merge(batch)
                    raise item
                else:
                    batch.append(item)
            if batch:
                yield merge(batch)
    finally:
        if not producer.done():
            producer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await producer
