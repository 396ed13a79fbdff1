"""``POST /v1/responses``: translate to a chat request, run the chat pipeline, render a Responses
object or Responses SSE events (``app.api.responses``). The lead wires the route:
``return await responses(self.pipeline, request, self.max_body)``."""

from __future__ import annotations

from collections.abc import AsyncIterator

from fastapi import Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from app.api.completions import error_json, read_json_body
from app.api.responses import ResponsesStream, response_id, to_chat_request, to_response
from app.generation import GenerationChunk, merge_chunks
from app.observability.tracing import SpanKind, start_span, trace_headers, trace_id_hex
from app.pipeline.context import Answer, RequestContext
from app.pipeline.pipeline import Pipeline, as_gateway_error
from app.schemas import chat_response


async def fold(answer: Answer) -> GenerationChunk:
    """The whole answer as one chunk: text, tool calls and logprobs of every chunk, the state of the last."""
    chunks = [answer.first]
    async for chunk in answer.rest:
        chunks.append(chunk)
    return merge_chunks(chunks)


async def _events(stream: ResponsesStream, answer: Answer) -> AsyncIterator[bytes]:
    for event in stream.start():
        yield event
    finished = False
    try:
        for event in stream.feed(answer.first):
            yield event
        async for chunk in answer.rest:
            for event in stream.feed(chunk):
                yield event
        for event in stream.done():
            yield event
        finished = True
    except Exception as exc:  # broken upstream or a schema violation after the text went out
        for event in stream.failed(as_gateway_error(exc)):
            yield event
        finished = True
    finally:
        if not finished and answer.cancel is not None:
            answer.cancel()


async def responses(pipeline: Pipeline, request: Request, max_body_bytes: int) -> Response:
    with start_span("ingress", carrier=request.headers, kind=SpanKind.SERVER,
                    attributes={"http.route": request.url.path}) as span:
        ctx = RequestContext(endpoint="chat", path=request.url.path, headers=request.headers)
        ctx.trace_id = trace_id_hex()
        tracing = trace_headers(span)
        body: dict = {}
        try:
            body = await read_json_body(request, max_body_bytes)
            ctx.body = to_chat_request(body)
            answer = await pipeline.run(ctx)
            headers = {**ctx.response_headers, **tracing}
            rid = response_id()
            if ctx.stream:
                stream = ResponsesStream(body, answer.first.model or ctx.response_headers.get("x-llmgw-model", ""),
                                         rid)
                return StreamingResponse(_events(stream, answer), media_type="text/event-stream", headers=headers)
            whole = await fold(answer)
            chat = chat_response(ctx.gen.request_id, whole.model, whole.text, whole.finish_reason,
                                 whole.prompt_tokens, whole.completion_tokens, tool_calls=whole.tool_calls)
            payload = to_response(body, chat, rid)
        except Exception as exc:
            err = as_gateway_error(exc)
            await pipeline.reject(ctx, err)
            return error_json(err, {**ctx.response_headers, **tracing})
        return JSONResponse(payload, headers={**ctx.response_headers, **tracing})
