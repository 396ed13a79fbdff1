"""Output redaction over a stream of ``GenerationChunk`` (what the pipeline's output stage wraps).

Text goes through a ``StreamRedactor``; the held-back tail is flushed into the last chunk (the one with
``finish_reason``). After a block finding the stream ends at once with ``finish_reason:
"content_filter"`` (the upstream should then be cancelled by the caller). Token counts and tool calls
pass through unchanged.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import replace

from app.generation import GenerationChunk
from app.guardrails.output import CONTENT_FILTER, StreamRedactor


async def redact_chunks(redactor: StreamRedactor,
                        chunks: AsyncIterable[GenerationChunk]) -> AsyncIterator[GenerationChunk]:
    last: GenerationChunk | None = None
    async for chunk in chunks:
        last = chunk
        text = redactor.feed(chunk.text) if chunk.text else ""
        if redactor.blocked:
            yield replace(chunk, text=text, finish_reason=CONTENT_FILTER, tool_calls=None)  # type: ignore[arg-type]
            return
        if chunk.finish_reason is not None:
            text += redactor.flush()
            if redactor.blocked:  # a finding still held back at the end
                yield replace(chunk, text=text, finish_reason=CONTENT_FILTER)  # type: ignore[arg-type]
                return
        yield replace(chunk, text=text)
    if last is None or last.finish_reason is None:  # the stream ended without a final chunk
        rest = redactor.flush()
        if rest or redactor.blocked:
            yield GenerationChunk(text=rest, finish_reason=CONTENT_FILTER if redactor.blocked else None)  # type: ignore[arg-type]
