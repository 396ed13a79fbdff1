"""``/v1/batches``: create (reserves the worst-case cost), retrieve, list, cancel."""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import JSONResponse, Response

from app.api.completions import read_json_body
from app.api.files import page_args
from app.batch.service import BatchService

MAX_BODY = 64 * 1024


async def create_batch(request: Request, service: BatchService, tenant: str, key_id: str | None = None) -> Response:
    body = await read_json_body(request, MAX_BODY)
    return JSONResponse(await service.create_batch(tenant, key_id, body))


async def get_batch(service: BatchService, tenant: str, batch_id: str) -> Response:
    return JSONResponse(await service.get_batch(tenant, batch_id))


async def list_batches(request: Request, service: BatchService, tenant: str) -> Response:
    limit, after = page_args(request)
    return JSONResponse(await service.list_batches(tenant, limit, after))


async def cancel_batch(service: BatchService, tenant: str, batch_id: str) -> Response:
    return JSONResponse(await service.cancel_batch(tenant, batch_id))
