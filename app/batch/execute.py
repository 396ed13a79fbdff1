"""``execute(body, endpoint, tenant, key_id) -> (status_code, body, cost_usd)`` over the gateway's pipeline.

A batch line or async request runs through the same stages as a real-time request (parse, tenant,
route, tokens, cache, generate, cost, log) with the principal resolved when the work was submitted;
``ctx.extras["lane"] = "batch"`` tells policy stages to draw on the batch's reservation and the
batch rate instead of the key's real-time budget and rpm/tpm.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from app.errors import NotFoundError
from app.pipeline.context import Principal, RequestContext
from app.pipeline.pipeline import Pipeline, as_gateway_error

ENDPOINTS = {"/v1/chat/completions": "chat", "/v1/completions": "completions"}


def pipeline_executor(pipeline: Pipeline, tenant_header: str = "x-llmgw-tenant",
                      render: Callable[..., Awaitable[dict[str, Any]]] | None = None):
    """The worker's ``execute`` callable: one unary pipeline run per line."""
    if render is None:
        from app.api.render import unary_payload as render

    async def execute(body: Any, endpoint: str, tenant: str, key_id: str | None) -> tuple[int, Any, float | None]:
        kind = ENDPOINTS.get(endpoint)
        if kind is None:
            err = NotFoundError(f"{endpoint} is not served by this gateway's batch lane yet.", code="unknown_url")
            return err.status_code, err.to_dict()
        body = dict(body) if isinstance(body, dict) else body
        if isinstance(body, dict):
            body["stream"] = False  # a batch line is answered as one JSON body
            body.pop("stream_options", None)
        ctx = RequestContext(endpoint=kind, path=endpoint, headers={tenant_header: tenant}, body=body)
        ctx.principal = Principal(tenant=tenant, key_id=key_id)
        ctx.extras["lane"] = "batch"
        try:
            answer = await pipeline.run(ctx)
            payload = await render(ctx, answer)
            return 200, payload, ctx.cost_usd  # the pipeline's cost finisher priced it (one price table)
        except Exception as exc:
            err = as_gateway_error(exc)
            await pipeline.reject(ctx, err)
            return err.status_code, err.to_dict(), None

    return execute
