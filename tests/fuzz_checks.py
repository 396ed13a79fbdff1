"""What the API fuzzing checks (tests/integration/test_schemathesis.py on the live graph,
tests/unit/test_fuzz_pipeline.py in-process), and how generated requests are steered."""

from __future__ import annotations

import json
import zlib

import schemathesis
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    status_code_conformance,
)

MODELS = ["small", "large", "auto", "tiny-small"]
NOT_RETRYABLE_502 = {"json_schema_validation_failed"}  # the same request would fail the same way: no Retry-After
MAX_GENERATED_TOKENS = 8  # keep real generation short; larger values stay when they overflow the context


def steer(case) -> None:
    """Most generated ``model`` strings are unknown (a 404): send about half of the bodies to a served model
    so the fuzzing reaches the pools, and keep their generation short (deterministic per body)."""
    body = case.body
    if not isinstance(body, dict) or (case.meta is not None and case.meta.generation.mode.is_negative):
        return  # a schema-violating body must stay one: negative_data_rejection expects its 4xx
    seed = zlib.crc32(json.dumps(body, sort_keys=True, default=str).encode())
    if case.path != "/v1/embeddings" and "model" in body and seed % 2 == 0:
        body["model"] = MODELS[seed // 2 % len(MODELS)]
    for key in ("max_tokens", "max_completion_tokens", "max_output_tokens"):
        value = body.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and MAX_GENERATED_TOKENS < value < 400:
            body[key] = MAX_GENERATED_TOKENS
    if case.path == "/v1/completions":
        body.setdefault("max_tokens", MAX_GENERATED_TOKENS)


@schemathesis.check
def openai_error_shape(ctx, response, case) -> bool | None:
    """Every non-2xx answer is ``{"error": {message, type, param, code}}``; the only 5xx are 502/503 (a 500 is
    a bug), 503 with Retry-After, 502 too unless it is a documented non-retryable cause; SSE streams end with
    ``[DONE]`` or an error event."""
    status = response.status_code
    if status >= 500 and status not in (502, 503):
        raise AssertionError(f"{status} from {case.method} {case.path}: {response.text[:300]}")
    if status >= 400:
        body = json.loads(response.text)
        assert set(body) == {"error"}, body
        err = body["error"]
        assert set(err) == {"message", "type", "param", "code"}, err
        assert isinstance(err["message"], str) and err["message"] and isinstance(err["type"], str), err
        if status == 503 or (status == 502 and err["code"] not in NOT_RETRYABLE_502):
            assert response.headers.get("retry-after"), f"{status} without Retry-After: {err}"
    elif "text/event-stream" in (response.headers.get("content-type") or [""])[0]:
        text = response.text.rstrip()
        assert text.endswith("data: [DONE]") or '"error"' in text.rsplit("data:", 1)[-1], text[-300:]
    return None


# negative_data_rejection: numbers and booleans are typed strictly, as the document (and OpenAI) says.
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_headers_conformance,
          negative_data_rejection, openai_error_shape]
