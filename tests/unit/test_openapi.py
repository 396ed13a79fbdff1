"""The ingress' /openapi.json (app/api/openapi.py): request bodies from the very models that validate them,
OpenAI's error shape on every error status, unique operation ids; schemathesis loads it."""

from __future__ import annotations

import jsonschema
import pytest
from pydantic import ValidationError

from app.errors import InvalidRequestError, ServiceUnavailableError


@pytest.fixture(scope="module")
def doc() -> dict:
    from deployments.ingress import api

    return api.openapi()


def _validator(doc: dict, component: str) -> jsonschema.Validator:
    schema = {"$ref": f"#/components/schemas/{component}", "components": doc["components"]}
    return jsonschema.Draft202012Validator(schema)


def test_openai_routes_document_their_bodies_and_errors(doc) -> None:
    chat = doc["paths"]["/v1/chat/completions"]["post"]
    assert chat["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/ChatCompletionRequest")
    assert set(chat["responses"]["200"]["content"]) == {"application/json", "text/event-stream"}
    assert chat["responses"]["503"]["headers"]["Retry-After"]["required"]
    for path in ("/v1/completions", "/v1/embeddings", "/v1/responses", "/v1/async/chat/completions", "/v1/batches"):
        assert "requestBody" in doc["paths"][path]["post"], path
    ids = [op["operationId"] for ops in doc["paths"].values() for op in ops.values()]
    assert len(ids) == len(set(ids))


def test_the_documented_bodies_are_the_validated_ones(doc) -> None:
    from app.schemas import ChatCompletionRequest

    chat = _validator(doc, "ChatCompletionRequest")
    good = {"model": "small", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8, "cache": False}
    assert chat.is_valid(good) and ChatCompletionRequest.model_validate(good)
    for bad in ({**good, "colour": "red"}, {**good, "temperature": 7}, {"model": "small"},
                {**good, "messages": [{"role": "wizard", "content": "x"}]}):
        assert not chat.is_valid(bad)
        with pytest.raises((ValidationError, InvalidRequestError)):
            ChatCompletionRequest.model_validate(bad)
    responses = _validator(doc, "ResponsesRequest")
    assert responses.is_valid({"model": "small", "input": "hi"}) and not responses.is_valid({"model": "small"})


def test_the_error_schema_is_what_errors_render(doc) -> None:
    error = _validator(doc, "Error")
    for err in (InvalidRequestError("bad", param="messages"), ServiceUnavailableError("down")):
        error.validate(err.to_dict())
    assert not error.is_valid({"detail": "Not Found"})  # FastAPI's default shape would fail


def test_schemathesis_loads_it(doc) -> None:
    import schemathesis

    ops = [op.ok() for op in schemathesis.openapi.from_dict(doc).get_all_operations()]
    assert {(o.method, o.path) for o in ops} >= {("post", "/v1/chat/completions"), ("get", "/v1/models")}
