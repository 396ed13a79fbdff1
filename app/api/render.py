"""An Answer rendered as OpenAI's unary JSON or SSE chunks (the pipeline's tracked stream underneath)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from app.generation import merge_chunks
from app.pipeline.context import Answer, RequestContext
from app.schemas import chat_response, completion_response
from app.sse import cancel_on_exit, sse_stream


async def unary_payload(ctx: RequestContext, answer: Answer) -> dict[str, Any]:
    """Drain the answer (finishers run at its end) and build the response body."""
    chunks = [answer.first]
    async for chunk in answer.rest:
        chunks.append(chunk)
    whole = merge_chunks(chunks)
    model = whole.model or answer.first.model or ctx.response_headers.get("x-llmgw-model", "")
    if ctx.endpoint == "chat":
        return chat_response(ctx.gen.request_id, model, whole.text, whole.finish_reason, whole.prompt_tokens,
                             whole.completion_tokens, tool_calls=whole.tool_calls, logprobs=whole.logprobs)
    return completion_response(ctx.gen.request_id, model, whole.text, whole.finish_reason, whole.prompt_tokens,
                               whole.completion_tokens, logprobs=whole.logprobs)


def sse_body(ctx: RequestContext, answer: Answer) -> AsyncIterator[bytes]:
    """SSE bytes; the usage chunk (``stream_options.include_usage``) carries ``cost_usd`` too."""
    def extra() -> dict[str, Any]:
        return {} if ctx.cost_usd is None else {"cost_usd": round(ctx.cost_usd, 8)}

    body = sse_stream(rid=ctx.gen.request_id, model=answer.first.model, chat=ctx.endpoint == "chat",
                      first=answer.first, rest=answer.rest, include_usage=ctx.include_usage, usage_extra=extra)
    return cancel_on_exit(body, answer)
