"""``/v1/batches``: create (reserves the worst-case cost), retrieve, list, cancel."""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import JSONResponse, Response

from app.api.batch_scope import BatchScope
from app.api.completions import read_json_body
from app.api.files import page_args

MAX_BODY = 64 * 1024


async def create_batch(request: Request, scope: BatchScope) -> Response:
    body = await read_json_body(request, MAX_BODY)
    return JSONResponse(await scope.service.create_batch(scope.tenant, scope.key_id, body, models=scope.models))


async def get_batch(scope: BatchScope, batch_id: str) -> Response:
    return JSONResponse(await scope.service.get_batch(scope.tenant, batch_id))


async def list_batches(request: Request, scope: BatchScope) -> Response:
    limit, after = page_args(request)
    return JSONResponse(await scope.service.list_batches(scope.tenant, limit, after))


async def cancel_batch(scope: BatchScope, batch_id: str) -> Response:
    return JSONResponse(await scope.service.cancel_batch(scope.tenant, batch_id))
