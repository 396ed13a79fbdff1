"""Structured output through the real graph (tiny random-weight models): the official SDK's parse()
with a pydantic model, json_schema / json_object response formats, streaming, LangChain
with_structured_output, the verdict header and the 400s for schemas guided decoding cannot enforce."""

from __future__ import annotations

import json

import openai
import pytest
from pydantic import BaseModel, Field

pytestmark = pytest.mark.gateway


class Place(BaseModel):
    city: str = Field(max_length=12)
    population: int = Field(ge=0, le=100000)
    kind: str = Field(pattern="^(town|city)$")


def _client(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key="unused-locally", max_retries=0)


def test_sdk_parse_with_a_pydantic_model(gateway_url: str) -> None:
    for seed in range(3):
        done = _client(gateway_url).chat.completions.parse(
            model="small", messages=[{"role": "user", "content": "Name a place."}], response_format=Place,
            max_tokens=200, seed=seed)
        place = done.choices[0].message.parsed
        assert isinstance(place, Place) and done.choices[0].finish_reason == "stop"


def test_json_schema_unary_has_the_verdict_header_and_bypasses_nothing_wrong(client) -> None:
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}, "n": {"type": "integer", "minimum": 1,
                                                                                "maximum": 9}},
              "required": ["ok", "n"], "additionalProperties": False}
    body = {"model": "large", "messages": [{"role": "user", "content": "Answer."}], "max_tokens": 100,
            "response_format": {"type": "json_schema", "json_schema": {"name": "a", "schema": schema, "strict": True}},
            "cache": False}
    resp = client.post("/v1/chat/completions", json=body)
    assert resp.status_code == 200, resp.text
    assert resp.headers["x-llmgw-schema"] == "valid"
    value = json.loads(resp.json()["choices"][0]["message"]["content"])
    assert isinstance(value["ok"], bool) and 1 <= value["n"] <= 9


def test_truncated_answer_stays_200_with_verdict(client) -> None:
    body = {"model": "small", "messages": [{"role": "user", "content": "Answer."}], "max_tokens": 3, "cache": False,
            "response_format": {"type": "json_schema", "json_schema": {"name": "a", "schema": {
                "type": "object", "properties": {"text": {"type": "string", "maxLength": 60}}, "required": ["text"]}}}}
    resp = client.post("/v1/chat/completions", json=body)
    assert resp.status_code == 200 and resp.json()["choices"][0]["finish_reason"] == "length"
    assert resp.headers["x-llmgw-schema"] == "truncated"


def _structured_counter(client, outcome: str) -> float:
    import re

    text = client.get("/metrics").text
    match = re.search(r'^llmgw_structured_output_total\{outcome="' + outcome + r'"\} ([0-9.e+]+)$', text, re.M)
    return float(match.group(1)) if match else 0.0


def test_a_violation_is_reasked_once_then_502(client) -> None:
    """oneOf is decoded as anyOf: two identical branches make every decoded answer invalid to the final check."""
    digit = {"type": "integer", "minimum": 0, "maximum": 9}
    schema = {"type": "object", "properties": {"n": {"oneOf": [digit, digit]}}, "required": ["n"],
              "additionalProperties": False}
    body = {"model": "small", "messages": [{"role": "user", "content": "Pick a digit."}], "max_tokens": 20,
            "cache": False, "response_format": {"type": "json_schema", "json_schema": {"name": "d", "schema": schema}}}
    reasks, failed = _structured_counter(client, "reask"), _structured_counter(client, "failed")
    resp = client.post("/v1/chat/completions", json=body)
    assert resp.status_code == 502, resp.text
    err = resp.json()["error"]
    assert err["code"] == "json_schema_validation_failed" and "is valid under each of" in err["message"]
    assert _structured_counter(client, "reask") == reasks + 1 and _structured_counter(client, "failed") == failed + 1


def test_an_email_field_is_decoded_within_its_bound(client) -> None:
    """maxLength beside format: email is honoured (it was a 400); the answer finishes within the bound."""
    tenant = "so-email-unredacted"  # the local config redacts emails in answers: not for this tenant
    put = client.put(f"/admin/tenants/{tenant}", json={"options": {"guardrails": {"output": {"pii": {
        "enabled": False}}}}})
    assert put.status_code == 200, put.text
    schema = {"type": "object", "properties": {"to": {"type": "string", "format": "email", "maxLength": 24}},
              "required": ["to"], "additionalProperties": False}
    body = {"model": "small", "messages": [{"role": "user", "content": "An address."}], "max_tokens": 60,
            "cache": False, "response_format": {"type": "json_schema", "json_schema": {"name": "e", "schema": schema}}}
    for seed in range(3):
        resp = client.post("/v1/chat/completions", json={**body, "seed": seed}, headers={"x-llmgw-tenant": tenant})
        assert resp.status_code == 200 and resp.headers["x-llmgw-schema"] == "valid", resp.text
        choice = resp.json()["choices"][0]
        to = json.loads(choice["message"]["content"])["to"]
        assert choice["finish_reason"] == "stop" and "@" in to and len(to) <= 24, to


def test_json_schema_streaming_joins_to_valid_json(gateway_url: str) -> None:
    schema = Place.model_json_schema()
    stream = _client(gateway_url).chat.completions.create(
        model="small", messages=[{"role": "user", "content": "Name a place."}], max_tokens=200, stream=True,
        response_format={"type": "json_schema", "json_schema": {"name": "place", "schema": schema}})
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    Place.model_validate_json(text)


def test_json_object_mode(client) -> None:
    body = {"model": "small", "messages": [{"role": "user", "content": "JSON please."}], "max_tokens": 120,
            "response_format": {"type": "json_object"}, "cache": False, "seed": 3}
    resp = client.post("/v1/chat/completions", json=body)
    assert resp.status_code == 200
    choice = resp.json()["choices"][0]
    if choice["finish_reason"] == "stop":
        assert isinstance(json.loads(choice["message"]["content"]), dict)
        assert resp.headers["x-llmgw-schema"] == "valid"
    else:
        assert resp.headers["x-llmgw-schema"] == "truncated" and choice["message"]["content"].startswith("{")


def test_langchain_with_structured_output(gateway_url: str) -> None:
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(model="small", base_url=f"{gateway_url}/v1", api_key="unused", max_tokens=200, max_retries=0)
    place = llm.with_structured_output(Place).invoke("Name a place.")
    assert isinstance(place, Place)


@pytest.mark.parametrize(("schema", "keyword"), [
    ({"type": "object", "properties": {"tags": {"type": "array", "uniqueItems": True}}}, "uniqueItems"),
    ({"type": "object", "properties": {"code": {"type": "string", "pattern": "^[A-Z]+$", "maxLength": 3}}},
     "maxLength"),
])
def test_unenforceable_schemas_are_400_naming_the_keyword(client, schema: dict, keyword: str) -> None:
    body = {"model": "small", "messages": [{"role": "user", "content": "x"}],
            "response_format": {"type": "json_schema", "json_schema": {"name": "a", "schema": schema}}}
    resp = client.post("/v1/chat/completions", json=body)
    err = resp.json()["error"]
    assert resp.status_code == 400 and err["code"] == "unsupported_schema_keyword" and keyword in err["message"]
    assert err["param"] == "response_format.json_schema.schema"


@pytest.mark.parametrize(("extra", "param"), [
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "a", "schema": {"type": "objekt"}}}},
     "response_format.json_schema.schema"),
    ({"response_format": {"type": "yaml"}}, "response_format"),
    ({"logit_bias": {"999999": 5}}, "logit_bias"),
    ({"n": 2}, "n"),
    ({"frobnicate": True}, "frobnicate"),
])
def test_bad_input_is_400(client, extra: dict, param: str) -> None:
    resp = client.post("/v1/chat/completions", json={"model": "small", "messages": [{"role": "user", "content": "x"}],
                                                      "max_tokens": 2, **extra})
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"]["param"] == param


def test_logprobs_unary_and_stream(gateway_url: str) -> None:
    client = _client(gateway_url)
    resp = client.chat.completions.create(model="small", messages=[{"role": "user", "content": "Hi"}], max_tokens=4,
                                          logprobs=True, top_logprobs=2, temperature=0)
    content = resp.choices[0].logprobs.content
    assert len(content) == 4 and all(len(t.top_logprobs) == 2 and t.logprob <= 0 for t in content)
    assert "".join(t.token for t in content) == resp.choices[0].message.content
    stream = client.chat.completions.create(model="small", messages=[{"role": "user", "content": "Hi"}],
                                            max_tokens=4, logprobs=True, top_logprobs=1, temperature=0, stream=True)
    streamed = [t for c in stream if c.choices and c.choices[0].logprobs for t in c.choices[0].logprobs.content]
    assert [t.token for t in streamed] == [t.token for t in content]
    legacy = client.completions.create(model="small", prompt="Hi", max_tokens=3, logprobs=2, temperature=0)
    lp = legacy.choices[0].logprobs
    assert len(lp.tokens) == 3 and all(len(t) <= 2 for t in lp.top_logprobs) and lp.text_offset[0] == 0
