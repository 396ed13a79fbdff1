"""An Answer rendered as OpenAI's unary JSON or SSE chunks (the pipeline's tracked stream underneath)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from app.pipeline.context import Answer, RequestContext
from app.schemas import chat_response, completion_response
from app.sse import cancel_on_exit, sse_stream


async def unary_payload(ctx: RequestContext, answer: Answer) -> dict[str, Any]:
    """Drain the answer (finishers run at its end) and build the response body."""
    async for _ in answer.rest:
        pass
    final = ctx.final or answer.first
    build = chat_response if ctx.endpoint == "chat" else completion_response
    model = final.model or answer.first.model or ctx.response_headers.get("x-llmgw-model", "")
    return build(ctx.gen.request_id, model, ctx.text, final.finish_reason, final.prompt_tokens,
                 final.completion_tokens)


def sse_body(ctx: RequestContext, answer: Answer) -> AsyncIterator[bytes]:
    """SSE bytes; the usage chunk (``stream_options.include_usage``) carries ``cost_usd`` too."""
    def extra() -> dict[str, Any]:
        return {} if ctx.cost_usd is None else {"cost_usd": round(ctx.cost_usd, 8)}

    body = sse_stream(rid=ctx.gen.request_id, model=answer.first.model, chat=ctx.endpoint == "chat",
                      first=answer.first, rest=answer.rest, include_usage=ctx.include_usage, usage_extra=extra)
    return cancel_on_exit(body, answer)
