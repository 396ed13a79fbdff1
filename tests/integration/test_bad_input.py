"""Bad input gets the right 4xx in OpenAI's error shape, never a 500."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.gateway
CHAT = "/v1/chat/completions"
OK_MSG = [{"role": "user", "content": "hi"}]


def _assert_error(resp, status: int, param: str | None = None, code: str | None = None) -> dict:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"error"}
    err = body["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert isinstance(err["message"], str) and err["message"]
    if param is not None:
        assert err["param"] == param
    if code is not None:
        assert err["code"] == code
    return err


def test_body_not_json(client) -> None:
    err = _assert_error(client.post(CHAT, content=b"{not json", headers={"content-type": "application/json"}), 400)
    assert "JSON" in err["message"]


def test_body_not_an_object(client) -> None:
    _assert_error(client.post(CHAT, json=[1, 2]), 400)


def test_empty_body(client) -> None:
    _assert_error(client.post(CHAT, content=b""), 400)


def test_invalid_utf8(client) -> None:
    err = _assert_error(client.post(CHAT, content=b'{"model": "small", "messages": "\xff\xfe"}'), 400)
    assert "UTF-8" in err["message"]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "small"}, "messages"),
        ({"model": "small", "messages": []}, "messages"),
        ({"model": "small", "messages": "hello"}, "messages"),
        ({"model": "small", "messages": [{"role": "wizard", "content": "x"}]}, "messages.0.role"),
        ({"model": "small", "messages": [{"content": "x"}]}, "messages.0.role"),
        ({"model": 42, "messages": OK_MSG}, "model"),
        ({"messages": OK_MSG}, "model"),
        ({"model": "small", "messages": OK_MSG, "max_tokens": -5}, "max_tokens"),
        ({"model": "small", "messages": OK_MSG, "max_tokens": 0}, "max_tokens"),
        ({"model": "small", "messages": OK_MSG, "max_tokens": 10**12}, "max_tokens"),
        ({"model": "small", "messages": OK_MSG, "max_tokens": "ten"}, "max_tokens"),
        ({"model": "small", "messages": OK_MSG, "temperature": 7}, "temperature"),
        ({"model": "small", "messages": OK_MSG, "stream": "yes please"}, "stream"),
        ({"model": "small", "messages": OK_MSG, "n": 3}, "n"),
    ],
)
def test_invalid_fields(client, body: dict, param: str) -> None:
    err = _assert_error(client.post(CHAT, json=body), 400, param=param)
    assert err["type"] == "invalid_request_error"


def test_unknown_model_is_404_listing_valid_names(client) -> None:
    err = _assert_error(client.post(CHAT, json={"model": "gpt-17", "messages": OK_MSG}), 404, code="model_not_found")
    assert "gpt-17" in err["message"] and "small" in err["message"] and "auto" in err["message"]


def test_max_tokens_beyond_context_is_400(client) -> None:
    body = {"model": "small", "messages": OK_MSG, "max_tokens": 100_000}
    _assert_error(client.post(CHAT, json=body), 400, param="max_tokens", code="context_length_exceeded")


@pytest.mark.parametrize("stream", [False, True])
def test_prompt_longer_than_context_is_400(client, stream: bool) -> None:
    long_text = "hello world " * 2000  # far past the test pools' 512-token context
    body = {"model": "small", "messages": [{"role": "user", "content": long_text}], "stream": stream}
    _assert_error(client.post(CHAT, json=body), 400, code="context_length_exceeded")


def test_oversized_body_is_413(client) -> None:
    body = json.dumps({"model": "small", "messages": [{"role": "user", "content": "x" * 400_000}]})
    _assert_error(client.post(CHAT, content=body.encode()), 413, code="request_too_large")


def test_unknown_path_and_method(client) -> None:
    _assert_error(client.post("/v1/nothing-here", json={}), 404)
    _assert_error(client.get(CHAT), 405)


def test_completion_prompt_list_of_many_is_400(client) -> None:
    _assert_error(client.post("/v1/completions", json={"model": "small", "prompt": ["a", "b"]}), 400, param="prompt")
