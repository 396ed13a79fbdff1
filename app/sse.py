"""Server-sent events in OpenAI's chunk format, from a stream of GenerationChunk."""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from app.errors import GatewayError, UpstreamError, find_gateway_error
from app.generation import GenerationChunk
from app.schemas import chat_chunk, completion_chunk, usage

logger = logging.getLogger(__name__)
DONE = b"data: [DONE]\n\n"


def event(payload: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"


async def sse_stream(
    *,
    rid: str,
    model: str,
    chat: bool,
    first: GenerationChunk,
    rest: AsyncIterator[GenerationChunk],
    include_usage: bool,
    on_done: Callable[[GenerationChunk, str], None] | None = None,
    usage_extra: Callable[[], dict[str, Any]] | None = None,
) -> AsyncIterator[bytes]:
    """Yield SSE bytes; a failure after the first chunk ends with an error event and ``[DONE]``."""
    created = int(time.time())
    last = first
    parts: list[str] = []

    offset = 0  # completions logprobs: text_offset of the chunk's first token

    def piece(chunk: GenerationChunk) -> bytes:
        nonlocal offset
        if chat:
            delta: dict[str, Any] = {"content": chunk.text} if chunk.text else {}
            if chunk.tool_calls:
                delta["tool_calls"] = chunk.tool_calls
            return event(chat_chunk(rid, created, model, delta, chunk.finish_reason, logprobs=chunk.logprobs))
        payload = completion_chunk(rid, created, model, chunk.text or "", chunk.finish_reason,
                                   logprobs=chunk.logprobs, offset=offset)
        offset += len(chunk.text)
        return event(payload)

    if chat:
        yield event(chat_chunk(rid, created, model, {"role": "assistant", "content": ""}, None))
    try:
        chunk: GenerationChunk | None = first
        while chunk is not None:
            last = chunk
            parts.append(chunk.text)
            if chunk.text or chunk.finish_reason or chunk.tool_calls or chunk.logprobs:
                yield piece(chunk)
            chunk = await anext(rest, None)
    except Exception as exc:  # a broken upstream after headers were sent
        err = find_gateway_error(exc) or UpstreamError("The model stream broke before completion.")
        logger.warning("stream %s broke: %s", rid, type(exc).__name__)
        yield event(_stream_error(err))
        yield DONE
        return
    if include_usage:
        final = (chat_chunk if chat else completion_chunk)(rid, created, model, None, None)
        final["usage"] = usage(last.prompt_tokens, last.completion_tokens)
        if usage_extra is not None:
            final["usage"].update(usage_extra())
        yield event(final)
    yield DONE
    if on_done is not None:
        on_done(last, "".join(parts))


def _stream_error(err: GatewayError) -> dict[str, Any]:
    body = err.to_dict()
    body["error"]["code"] = body["error"]["code"] or "stream_error"
    return body


async def cancel_on_exit(body: AsyncIterator[bytes], upstream: Any) -> AsyncIterator[bytes]:
    """Forward SSE bytes; if the client goes away, cancel the upstream call (aborting the engine request)."""
    finished = False
    try:
        async for part in body:
            yield part
        finished = True
    finally:
        if not finished:
            upstream.cancel()


async def replay(
    first: GenerationChunk, rest_text: list[str], final: GenerationChunk
) -> AsyncIterator[GenerationChunk]:
    """Chunks for a stored answer, so a cache hit streams like a generated one."""
    for piece in rest_text:
        yield GenerationChunk(piece, None, final.prompt_tokens, 0, final.model)
    yield GenerationChunk("", final.finish_reason, final.prompt_tokens, final.completion_tokens, final.model)


def split_text(text: str, size: int = 16) -> list[str]:
    """Split an answer into streamable pieces of about ``size`` characters, at spaces; joins back exactly."""
    pieces: list[str] = []
    current = ""
    for token in re.findall(r"\s*\S+|\s+$", text):
        if current and len(current) + len(token) > size:
            pieces.append(current)
            current = ""
        current += token
    if current:
        pieces.append(current)
    return pieces or [""]
