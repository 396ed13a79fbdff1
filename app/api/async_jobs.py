"""``POST /v1/async/chat/completions`` (a job id at once, optional ``webhook_url``) and ``GET /v1/async/{id}``."""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import JSONResponse, Response

from app.api.batch_scope import BatchScope
from app.api.completions import read_json_body


async def create_async(request: Request, scope: BatchScope, max_body_bytes: int) -> Response:
    body = await read_json_body(request, max_body_bytes)
    job = await scope.service.create_job(scope.tenant, scope.key_id, "/v1/chat/completions", body,
                                         models=scope.models)
    return JSONResponse(job, status_code=202)


async def get_async(scope: BatchScope, job_id: str) -> Response:
    return JSONResponse(await scope.service.get_job(scope.tenant, job_id))
