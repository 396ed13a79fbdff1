"""``execute(body, endpoint, tenant, key_id) -> (status_code, body[, cost_usd])`` over the gateway's own request path.

A chat or completions line (or async request) runs through the same stages as a real-time request
(parse, tenant, route, tokens, cache, generate, cost, log) via ``app.api.internal.run_unary``, with the
principal resolved when the work was submitted and ``lane="batch"``: policy stages draw on the batch's
reservation and the batch rate instead of the key's real-time budget and rpm/tpm.

An ``/v1/embeddings`` line is answered as ``POST /v1/embeddings`` answers (app/api/embeddings.py: the
router deployment's embedding model, OpenAI's response shape, the same 400/404 refusals), at most
``embed_concurrency`` at a time per worker (the router also embeds every real-time ``auto`` request).
Embeddings are not priced (as on the real-time endpoint): such a line costs 0.
"""

from __future__ import annotations

import asyncio
from typing import Any

from app.api.embeddings import Embed, create_embeddings, parse_embedding_request
from app.api.internal import run_unary
from app.errors import NotFoundError
from app.pipeline.context import Principal
from app.pipeline.pipeline import Pipeline, as_gateway_error

ENDPOINTS = {"/v1/chat/completions": "chat", "/v1/completions": "completions", "/v1/embeddings": "embeddings"}


def pipeline_executor(pipeline: Pipeline, tenant_header: str = "x-llmgw-tenant", embed: Embed | None = None,
                      embed_concurrency: int = 2):
    """The worker's ``execute`` callable: one unary pipeline run per line (the tenant header too, for an
    authenticate stage that does not keep a preset principal); embeddings through ``embed`` when given."""
    embed_slots = asyncio.Semaphore(max(1, embed_concurrency))

    async def embeddings(body: Any) -> tuple[int, Any, float]:
        try:
            if not isinstance(body, dict):
                body = {"__invalid_body__": body}  # a 400 naming the missing fields
            req = parse_embedding_request(body)
            async with embed_slots:
                return 200, await create_embeddings(req, embed), 0.0
        except Exception as exc:
            err = as_gateway_error(exc)
            return err.status_code, err.to_dict(), 0.0

    async def execute(body: Any, endpoint: str, tenant: str, key_id: str | None,
                      models: tuple[str, ...] | None = None) -> tuple:
        kind = ENDPOINTS.get(endpoint)
        if kind == "embeddings" and embed is not None:
            return await embeddings(body)
        if kind not in ("chat", "completions"):
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
