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
    """Re-chunk a token stream: chunks at once until one carries output, then windows growing to ``window_s``.

    Every item crossing a Ray handle or a socket costs a fixed overhead; merging the deltas produced in a
    short window keeps tokens/s close to the bare engine while TTFT is unchanged. Nothing waits before the
    first chunk with text or a tool call (an engine's first token often detokenizes to "" — half a UTF-8
    character) nor before the one after it; then windows start at ``window_s / 8`` and double: the output
    guard holds a trailing word back until it ends (it could be an e-mail or a key), so the first visible
    text must not wait a window for the token that completes it. Cancelling the consumer cancels the producer
    (which aborts the engine request).
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
        shown = False  # a chunk with visible output has gone out
        wait = 0.0  # 0 until then and for the chunk right after it; then window_s / 8, doubling to window_s
        done = False
        while not done:
            item = await queue.get()
            items = [item]
            if wait:
                await asyncio.sleep(wait)
                wait = min(window_s, wait * 2)
            elif shown:
                wait = window_s / 8
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
                out = merge(batch)
                shown = shown or bool(out.text or out.tool_calls)
                yield out
    finally:
        if not producer.done():
            producer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await producer
