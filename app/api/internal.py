"""Run one OpenAI request body through a pipeline without HTTP (batch lines, async jobs, evaluations).

Returns ``(status_code, body)`` exactly as the HTTP API would answer a non-streaming request: the
OpenAI response object, or the OpenAI error object with its status.
"""

from __future__ import annotations

from typing import Any

from app.api.render import unary_payload
from app.pipeline.context import Endpoint, Principal, RequestContext
from app.pipeline.pipeline import Pipeline, as_gateway_error

PATHS = {"chat": "/v1/chat/completions", "completions": "/v1/completions", "embeddings": "/v1/embeddings"}


async def run_unary(pipeline: Pipeline, endpoint: Endpoint, body: dict[str, Any], *,
                    headers: dict[str, str] | None = None, principal: Principal | None = None,
                    lane: str = "realtime") -> tuple[int, dict[str, Any], dict[str, str]]:
    """``principal`` set: the caller already authenticated (e.g. the batch's owner); ``lane`` labels the work."""
    ctx = RequestContext(endpoint=endpoint, path=PATHS.get(endpoint, endpoint), headers=headers or {},
                         body={**body, "stream": False})
    ctx.extras["lane"] = lane
    if principal is not None:
        ctx.principal = principal
    try:
        answer = await pipeline.run(ctx)
        payload = await unary_payload(ctx, answer)
    except Exception as exc:
        err = as_gateway_error(exc)
        await pipeline.reject(ctx, err)
        return err.status_code, err.to_dict(), dict(ctx.response_headers)
    return 200, payload, dict(ctx.response_headers)
