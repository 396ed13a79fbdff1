"""``/v1/files``: upload (streamed to storage under its own size limit), retrieve, list, delete, content."""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from app.api.batch_scope import BatchScope
from app.api.multipart_stream import read_multipart
from app.errors import InvalidRequestError
from app.http_body import check_content_length

FORM_OVERHEAD = 64 * 1024  # multipart headers and text fields beyond the file's own limit


def page_args(request: Request) -> tuple[int, str | None]:
    try:
        limit = int(request.query_params.get("limit", "20"))
    except ValueError:
        raise InvalidRequestError("limit must be an integer.", param="limit") from None
    if not 1 <= limit <= 10_000:
        raise InvalidRequestError("limit must be between 1 and 10000.", param="limit")
    return limit, request.query_params.get("after")


async def create_file(request: Request, scope: BatchScope) -> Response:
    """``POST /v1/files`` (multipart: ``file``, ``purpose``), read from ``request.stream()`` chunk by chunk."""
    limit = scope.service.cfg.max_file_bytes + FORM_OVERHEAD
    check_content_length(request.headers.get("content-length"), limit)
    upload = scope.service.new_upload()
    try:
        form = await read_multipart(request.headers.get("content-type"), request.stream(), "file", upload.write,
                                    limit)
    except BaseException:
        await upload.abort()
        raise
    obj = await upload.commit(scope.tenant, form.filename or "upload.jsonl", form.fields.get("purpose", ""))
    return JSONResponse(obj)


async def get_file(scope: BatchScope, file_id: str) -> Response:
    return JSONResponse(await scope.service.get_file(scope.tenant, file_id))


async def list_files(request: Request, scope: BatchScope) -> Response:
    limit, after = page_args(request)
    purpose = request.query_params.get("purpose")
    return JSONResponse(await scope.service.list_files(scope.tenant, limit, after, purpose))


async def delete_file(scope: BatchScope, file_id: str) -> Response:
    return JSONResponse(await scope.service.delete_file(scope.tenant, file_id))


async def file_content(scope: BatchScope, file_id: str) -> Response:
    """The file's bytes, streamed (an output/error file is read from the batch's results in line order)."""
    chunks = await scope.service.file_content(scope.tenant, file_id)
    return StreamingResponse(chunks, media_type="application/octet-stream")
