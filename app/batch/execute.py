"""``execute(body, endpoint, tenant, key_id) -> (status_code, body)`` over the gateway's own pipeline.

A batch line or async request runs through the same stages as a real-time request (parse, tenant,
route, tokens, cache, generate, cost, log) via ``app.api.internal.run_unary``, with the principal
resolved when the work was submitted and ``lane="batch"``: policy stages draw on the batch's
reservation and the batch rate instead of the key's real-time budget and rpm/tpm.
"""

from __future__ import annotations

from typing import Any

from app.api.internal import run_unary
from app.errors import NotFoundError
from app.pipeline.context import Principal
from app.pipeline.pipeline import Pipeline

ENDPOINTS = {"/v1/chat/completions": "chat", "/v1/completions": "completions", "/v1/embeddings": "embeddings"}


def pipeline_executor(pipeline: Pipeline, tenant_header: str = "x-llmgw-tenant",
                      served: frozenset[str] = frozenset({"chat", "completions"})):
    """The worker's ``execute`` callable: one unary pipeline run per line (the tenant header too, for an
    authenticate stage that does not keep a preset principal)."""

    async def execute(body: Any, endpoint: str, tenant: str, key_id: str | None,
                      models: tuple[str, ...] | None = None) -> tuple[int, Any]:
        kind = ENDPOINTS.get(endpoint)
        if kind not in served:
            err = NotFoundError(f"{endpoint} is not served by this gateway.", code="unknown_url")
            return err.status_code, err.to_dict()
        if not isinstance(body, dict):
            body = {"__invalid_body__": body}  # the parse stage answers a 400 naming the missing fields
        body = {k: v for k, v in body.items() if k != "stream_options"}
        principal = Principal(tenant=tenant, key_id=key_id, models=models)
        status, payload, _ = await run_unary(pipeline, kind, body, headers={tenant_header: tenant},
                                             principal=principal, lane="batch")
        return status, payload

    return execute
