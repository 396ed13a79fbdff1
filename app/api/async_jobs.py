"""``POST /v1/async/chat/completions`` (a job id at once, optional ``webhook_url``) and ``GET /v1/async/{id}``."""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import JSONResponse, Response

from app.api.completions import read_json_body
from app.batch.service import BatchService


async def create_async(request: Request, service: BatchService, tenant: str, max_body_bytes: int,
                       key_id: str | None = None) -> Response:
    body = await read_json_body(request, max_body_bytes)
    job = await service.create_job(tenant, key_id, "/v1/chat/completions", body)
    return JSONResponse(job, status_code=202)


async def get_async(service: BatchService, tenant: str, job_id: str) -> Response:
    return JSONResponse(await service.get_job(tenant, job_id))
