"""The ingress' OpenAPI document (``GET /openapi.json``), request bodies included (issue 14, fuzzing).

The handlers read the raw request (the pipeline validates it), so FastAPI alone documents no request
bodies. :func:`gateway_openapi` starts from FastAPI's document and fills in, for the OpenAI-compatible
routes, the request body (the pydantic models that validate it: ``ChatCompletionRequest``,
``CompletionRequest``, ``EmbeddingRequest``; the Responses subset by hand), the 200 bodies (JSON, and
SSE where ``stream`` is allowed) and the error body every other status carries (OpenAI's shape;
429/502/503 with ``Retry-After``). Operation ids are made unique (``api_route`` with several methods
repeats them). ``tests/integration/test_schemathesis.py`` fuzzes the live graph against it.
"""

from __future__ import annotations

import copy
import re
import warnings
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic.json_schema import models_json_schema

REF = "#/components/schemas/{model}"
ERROR = {
    "type": "object", "required": ["error"], "additionalProperties": False,
    "properties": {"error": {
        "type": "object", "required": ["message", "type", "param", "code"], "additionalProperties": False,
        "properties": {"message": {"type": "string", "minLength": 1}, "type": {"type": "string"},
                       "param": {"type": ["string", "null"]}, "code": {"type": ["string", "null"]}}}},
}
_RESPONSES_CONTENT = {"anyOf": [{"type": "string"}, {"type": "array", "items": {
    "type": "object", "required": ["type", "text"],
    "properties": {"type": {"enum": ["input_text", "output_text", "text"]}, "text": {"type": "string"}}}}]}
RESPONSES_REQUEST = {  # the stateless subset app/api/responses.py translates onto chat completions
    "type": "object", "required": ["model", "input"],
    "properties": {
        "model": {"type": "string", "minLength": 1, "examples": ["small"]},
        "input": {"anyOf": [{"type": "string"}, {"type": "array", "minItems": 1, "items": {
            "type": "object", "properties": {
                "type": {"enum": ["message", "function_call", "function_call_output", "reasoning"]},
                "role": {"enum": ["user", "system", "developer", "assistant"]},
                "content": _RESPONSES_CONTENT,
                "call_id": {"type": "string"}, "name": {"type": "string"}, "arguments": {"type": "string"},
                "output": _RESPONSES_CONTENT}}}]},
        "instructions": {"type": ["string", "null"]},
        "stream": {"type": ["boolean", "null"]},
        "temperature": {"type": ["number", "null"], "minimum": 0, "maximum": 2},
        "top_p": {"type": ["number", "null"], "exclusiveMinimum": 0, "maximum": 1},
        "max_output_tokens": {"type": ["integer", "null"], "minimum": 1},
        "tools": {"type": ["array", "null"], "items": {"type": "object"}},
        "tool_choice": {"anyOf": [{"enum": ["none", "auto", "required"]}, {"type": "object"}, {"type": "null"}]},
        "parallel_tool_calls": {"type": ["boolean", "null"]},
        "text": {"type": ["object", "null"]},
        "metadata": {"type": ["object", "null"], "additionalProperties": {"type": "string"}},
        "user": {"type": ["string", "null"]},
        "store": {"type": ["boolean", "null"]},
        "truncation": {"enum": ["disabled", "auto", None]},
        "cache": {"type": ["boolean", "null"]},
    },
    "additionalProperties": False,
}
PROMPT_REF = {  # gateway extension (docs/prompts.md)
    "type": "object", "required": ["name"],
    "properties": {"name": {"type": "string"}, "version": {"type": "integer", "minimum": 1},
                   "label": {"type": "string"}, "variables": {"type": "object"}},
}
BATCH_REQUEST = {  # docs/batch.md
    "type": "object", "required": ["input_file_id", "endpoint", "completion_window"],
    "properties": {"input_file_id": {"type": "string"},
                   "endpoint": {"enum": ["/v1/chat/completions", "/v1/completions", "/v1/embeddings"]},
                   "completion_window": {"type": "string", "examples": ["24h"]},
                   "metadata": {"type": ["object", "null"], "additionalProperties": {"type": "string"}}},
}
FILE_UPLOAD = {"type": "object", "required": ["file", "purpose"],
               "properties": {"file": {"type": "string", "format": "binary"}, "purpose": {"enum": ["batch"]}}}
# route -> (request body component, whether `stream: true` answers with SSE)
BODIES = {
    ("/v1/chat/completions", "post"): ("ChatCompletionRequest", True),
    ("/v1/completions", "post"): ("CompletionRequest", True),
    ("/v1/embeddings", "post"): ("EmbeddingRequest", False),
    ("/v1/responses", "post"): ("ResponsesRequest", True),
    ("/v1/async/chat/completions", "post"): ("ChatCompletionRequest", False),
    ("/v1/batches", "post"): ("BatchRequest", False),
    ("/v1/files", "post"): ("FileUpload", False),
}
OPENAI_ROUTES = {path for path, _ in BODIES} | {"/v1/models"}


def _request_schemas() -> dict[str, Any]:
    from app.api.embeddings import EmbeddingRequest
    from app.schemas import ChatCompletionRequest, CompletionRequest

    _, top = models_json_schema([(m, "validation") for m in (ChatCompletionRequest, CompletionRequest,
                                                             EmbeddingRequest)], ref_template=REF)
    schemas = top["$defs"]
    for name in ("ChatCompletionRequest", "CompletionRequest"):
        body = schemas[name]
        body["additionalProperties"] = False  # unknown fields are a 400 unknown_parameter
        body["properties"]["model"]["examples"] = ["small", "auto"]
        if name == "ChatCompletionRequest":
            body["properties"]["prompt_ref"] = PROMPT_REF
            body["required"] = sorted(set(body.get("required", [])) | {"messages"})
    schemas["EmbeddingRequest"]["properties"]["model"]["examples"] = ["all-minilm-l6-v2"]
    schemas["ResponsesRequest"] = copy.deepcopy(RESPONSES_REQUEST)
    schemas["BatchRequest"] = copy.deepcopy(BATCH_REQUEST)
    schemas["FileUpload"] = copy.deepcopy(FILE_UPLOAD)
    schemas["Error"] = ERROR
    return schemas


def _error_response(description: str, retry_after: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {"description": description,
                           "content": {"application/json": {"schema": {"$ref": REF.format(model="Error")}}}}
    if retry_after:
        out["headers"] = {"Retry-After": {"required": True, "schema": {"type": "string"}}}
    return out


def _document(op: dict[str, Any], component: str | None, streams: bool) -> None:
    if component is not None:
        media = "multipart/form-data" if component == "FileUpload" else "application/json"
        op["requestBody"] = {"required": True, "content": {media: {"schema": {"$ref": REF.format(model=component)}}}}
    ok: dict[str, Any] = {"application/json": {"schema": {"type": "object"}}}
    if streams:
        ok["text/event-stream"] = {"schema": {"type": "string"}}
    op["responses"] = {
        "200": {"description": "The answer (SSE when the request has `stream: true`).", "content": ok},
        "429": _error_response("A rate limit or quota (Retry-After unless a retry cannot help)."),
        "502": _error_response("json_schema_validation_failed: the answer failed the requested schema after one "
                               "re-ask (not retryable, no Retry-After)."),
        "503": _error_response("No path can answer now.", retry_after=True),
        "default": _error_response("Any other error, in OpenAI's shape (400, 401, 403, 404, 413, ...)."),
    }


def gateway_openapi(api: FastAPI) -> dict[str, Any]:
    """The document for ``api`` (cached on it, as FastAPI does)."""
    if api.openapi_schema is not None:
        return api.openapi_schema
    with warnings.catch_warnings():  # FastAPI's duplicate operation ids: replaced below
        warnings.simplefilter("ignore", UserWarning)
        doc = get_openapi(title=api.title, version=api.version, routes=api.routes,
                          description="OpenAI-compatible LLM gateway (Ray Serve + vLLM). Errors: OpenAI's shape.")
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            op["operationId"] = f"{method}_{re.sub(r'[^a-zA-Z0-9]+', '_', path).strip('_')}"
            if (path, method) in BODIES or path in OPENAI_ROUTES:
                component, streams = BODIES.get((path, method), (None, False))
                _document(op, component, streams)
            else:
                op.setdefault("responses", {})["default"] = _error_response("An error, in OpenAI's shape.")
    doc.setdefault("components", {}).setdefault("schemas", {}).update(_request_schemas())
    api.openapi_schema = doc
    return doc


def install_openapi(api: FastAPI) -> None:
    """Serve :func:`gateway_openapi` at ``api.openapi_url``."""
    api.openapi = lambda: gateway_openapi(api)  # type: ignore[method-assign]
