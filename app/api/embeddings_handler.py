"""``POST /v1/embeddings`` over HTTP: read the body, authenticate like every endpoint, embed with the
router deployment's model (``Router.embed_batch``). The lead wires the route:
``return await embeddings(request, self.router.embed_batch.remote, self.max_body, authenticate)``
with ``authenticate`` the pipeline's Authenticate stage (``pipeline.stage("authenticate")``)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from fastapi import Request
from fastapi.responses import JSONResponse, Response

from app.api.completions import error_json, read_json_body
from app.api.embeddings import EMBEDDING_MODEL, Embed, create_embeddings, parse_embedding_request
from app.observability import metrics
from app.pipeline.context import RequestContext
from app.pipeline.pipeline import as_gateway_error

Stage = Callable[[RequestContext], Awaitable[None]]


async def embeddings(request: Request, embed: Embed, max_body_bytes: int,
                     authenticate: Stage | None = None) -> Response:
    ctx = RequestContext(endpoint="embeddings", path=request.url.path, headers=request.headers)
    start = time.perf_counter()
    try:
        body = await read_json_body(request, max_body_bytes)
        if authenticate is not None:
            await authenticate(ctx)
        payload = await create_embeddings(parse_embedding_request(body), embed)
    except Exception as exc:
        err = as_gateway_error(exc)
        metrics.observe_request(endpoint=ctx.path, route="embeddings", model=EMBEDDING_MODEL, status=err.status_code,
                                latency_s=time.perf_counter() - start, stream=False, tenant=ctx.tenant)
        return error_json(err)
    metrics.observe_request(endpoint=ctx.path, route="embeddings", model=EMBEDDING_MODEL, status=200,
                            latency_s=time.perf_counter() - start, stream=False, tenant=ctx.tenant,
                            prompt_tokens=payload["usage"]["prompt_tokens"])
    return JSONResponse(payload)
