"""``POST /v1/chat/completions`` and ``POST /v1/completions``: read the body, run the pipeline, render."""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from app.api.body_limit import drain, read_body_bounded
from app.api.render import sse_body, unary_payload
from app.errors import GatewayError, PayloadTooLargeError
from app.http_body import check_content_length, parse_json_object
from app.observability.tracing import SpanKind, set_attributes, start_span, trace_headers, trace_id_hex
from app.pipeline.context import Endpoint, RequestContext
from app.pipeline.pipeline import Pipeline, as_gateway_error


def error_json(err: GatewayError, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(err.to_dict(), status_code=err.status_code, headers={**(headers or {}), **err.headers})


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The raw body. Past ``max_bytes`` (a Content-Length over it, or a chunked body as soon as it passes it) a
    413: the rest of the body is drained first (bounded, app/api/body_limit.py), so the answer reaches a client
    that is still sending and the connection stays usable (issue 14 #2)."""
    stream = request.stream()
    try:
        check_content_length(request.headers.get("content-length"), max_bytes)
        return await read_body_bounded(stream, max_bytes)
    except PayloadTooLargeError:
        await drain(stream)
        raise


async def read_json_body(request: Request, max_bytes: int) -> dict:
    """The body as a JSON object (400 when it is not one, 413 past ``max_bytes``: :func:`read_body`)."""
    return parse_json_object(await read_body(request, max_bytes), max_bytes)


async def read_json_body_or_none(request: Request, max_bytes: int) -> dict | None:
    """:func:`read_json_body` for routes whose body is optional: an empty body is None."""
    raw = await read_body(request, max_bytes)
    return parse_json_object(raw, max_bytes) if raw.strip() else None


async def complete(pipeline: Pipeline, request: Request, endpoint: Endpoint, max_body_bytes: int) -> Response:
    """One trace per request: an incoming ``traceparent`` is honoured and ``x-llmgw-trace-id`` returned."""
    attributes = {"http.route": request.url.path}
    with start_span("ingress", carrier=request.headers, kind=SpanKind.SERVER, attributes=attributes) as span:
        ctx = RequestContext(endpoint=endpoint, path=request.url.path, headers=request.headers)
        ctx.trace_id = trace_id_hex()
        tracing = trace_headers(span)
        try:
            ctx.body = await read_json_body(request, max_body_bytes)
            try:
                answer = await pipeline.run(ctx)
            finally:
                set_attributes(span, tenant=ctx.tenant, model=ctx.model or None, route=ctx.pool or None,
                               path=ctx.response_headers.get("x-llmgw-path"), cache=ctx.cache_status)
            headers = {**ctx.response_headers, **tracing}
            if ctx.stream:
                return StreamingResponse(sse_body(ctx, answer), media_type="text/event-stream", headers=headers)
            payload = await unary_payload(ctx, answer)
        except Exception as exc:  # a GatewayError (or a Ray-wrapped one, or a bug): OpenAI's error shape
            err = as_gateway_error(exc)
            await pipeline.reject(ctx, err)  # no-op when the pipeline already finished this request
            return error_json(err, {**ctx.response_headers, **tracing})
        headers = {**ctx.response_headers, **tracing}
        if ctx.cost_usd is not None:
            headers["x-llmgw-cost-usd"] = f"{ctx.cost_usd:.8f}"
        return JSONResponse(payload, headers=headers)
