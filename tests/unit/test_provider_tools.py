"""Tools, tool history, response_format and logprobs in the OpenAI and Anthropic wire formats, against the
real local fake provider server; the chain skips a step that cannot honour what a request needs."""

from __future__ import annotations

import asyncio
import json

import pytest

from app.engines.base import collect
from app.errors import ServiceUnavailableError
from app.generation import GenerationChunk, GenerationRequest, SamplingOptions
from app.resilience.chain import Step, run_chain
from app.resilience.providers import make_provider
from app.resilience.settings import ProviderConfig, RetryConfig
from tests.fakes.provider_server import FakeProvider

KEY_ENV = "LLMGW_TEST_PROVIDER_KEY"
WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}, "unit": {"enum": ["c", "f"]}},
    "required": ["city", "unit"]}}}
HISTORY = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "weather in Oslo?"},
           {"role": "assistant", "content": "", "tool_calls": [{"id": "call_1", "type": "function", "function": {
               "name": "get_weather", "arguments": "{\"city\": \"Oslo\", \"unit\": \"c\"}"}}]},
           {"role": "tool", "tool_call_id": "call_1", "content": "12 C"},
           {"role": "user", "content": "and tomorrow?"}]


@pytest.fixture()
def fake(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv(KEY_ENV, "sk-test")
    server = FakeProvider().start()
    yield server
    server.stop()


def provider(fake: FakeProvider, kind: str):
    base = fake.url + ("/v1" if kind == "openai" else "")
    return make_provider(ProviderConfig(name=kind, kind=kind, base_url=base, model=f"{kind}-model",
                                        api_key_env=KEY_ENV, timeout_s=3))


def run(p, req: GenerationRequest) -> GenerationChunk:
    return asyncio.run(collect(p.stream(req)))


def tool_req(choice) -> GenerationRequest:
    return GenerationRequest("r", "auto", messages=HISTORY, tools=[WEATHER], tool_choice=choice,
                             parallel_tool_calls=False, sampling=SamplingOptions(max_tokens=20))


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
def test_forced_tool_call_round_trip(fake: FakeProvider, kind: str) -> None:
    out = run(provider(fake, kind), tool_req({"type": "function", "function": {"name": "get_weather"}}))
    [call] = out.tool_calls
    assert call["function"]["name"] == "get_weather" and call["id"]
    assert json.loads(call["function"]["arguments"]) == {"city": "x", "unit": "c"}
    body = fake.requests[-1]["body"]
    if kind == "openai":
        assert body["tools"] == [WEATHER] and body["tool_choice"]["function"]["name"] == "get_weather"
        assert body["parallel_tool_calls"] is False and body["messages"][2]["content"] is None
        assert body["messages"][3] == {"role": "tool", "tool_call_id": "call_1", "content": "12 C"}
        assert out.finish_reason == "stop"
    else:
        assert body["tools"][0]["input_schema"] == WEATHER["function"]["parameters"]
        assert body["tool_choice"] == {"type": "tool", "name": "get_weather", "disable_parallel_tool_use": True}
        assert body["system"] == "be brief"
        assert body["messages"][1] == {"role": "assistant", "content": [
            {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Oslo", "unit": "c"}}]}
        assert body["messages"][2] == {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "call_1", "content": "12 C"}]}
        assert out.finish_reason == "tool_calls"


def test_anthropic_tool_choice_mapping(fake: FakeProvider) -> None:
    p = provider(fake, "anthropic")
    for choice, expected in (("auto", {"type": "auto", "disable_parallel_tool_use": True}),
                             ("required", {"type": "any", "disable_parallel_tool_use": True}),
                             ("none", {"type": "none"})):
        assert p.body(tool_req(choice))["tool_choice"] == expected


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
def test_response_format_travels_and_answers_json(fake: FakeProvider, kind: str) -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer", "minimum": 3}}, "required": ["n"]}
    fmt = {"type": "json_schema", "json_schema": {"name": "num", "schema": schema, "strict": True}}
    req = GenerationRequest("r", "auto", messages=HISTORY[:2], sampling=SamplingOptions(max_tokens=20, structured=fmt))
    out = run(provider(fake, kind), req)
    assert json.loads(out.text) == {"n": 3} and out.tool_calls is None and out.finish_reason == "stop"
    body = fake.requests[-1]["body"]
    if kind == "openai":
        assert body["response_format"] == fmt
    else:
        assert body["tool_choice"] == {"type": "tool", "name": "json_answer"}
        assert body["tools"][-1]["input_schema"] == schema


def test_openai_logprobs_and_sampling_fields_pass_through(fake: FakeProvider) -> None:
    req = GenerationRequest("r", "auto", messages=HISTORY[:2], sampling=SamplingOptions(
        max_tokens=20, logprobs=1, logit_bias={"5": -100}, presence_penalty=0.5))
    out = run(provider(fake, "openai"), req)
    body = fake.requests[-1]["body"]
    assert body["logprobs"] is True and body["top_logprobs"] == 1 and body["logit_bias"] == {"5": -100}
    assert body["presence_penalty"] == 0.5
    assert [e["token"] for e in out.logprobs] == fake.words and all(len(e["top_logprobs"]) == 1 for e in out.logprobs)


def test_chain_skips_steps_that_cannot_honour_the_request(fake: FakeProvider) -> None:
    req = GenerationRequest("r", "auto", messages=HISTORY[:2], sampling=SamplingOptions(max_tokens=5, logprobs=0))
    anthropic, openai = provider(fake, "anthropic"), provider(fake, "openai")
    steps = [Step("provider:anthropic", lambda: anthropic.stream(req), capabilities=anthropic.capabilities),
             Step("provider:openai", lambda: openai.stream(req), capabilities=openai.capabilities)]
    result = asyncio.run(run_chain(steps, RetryConfig(attempts=1), needs=req.needs()))
    assert result.path == "provider:openai" and result.attempts == [("provider:anthropic", "unsupported:logprobs")]
    with pytest.raises(ServiceUnavailableError) as info:
        asyncio.run(run_chain(steps[:1], RetryConfig(attempts=1), needs=req.needs()))
    assert "unsupported:logprobs" in info.value.message
    assert [r["path"] for r in fake.requests] == ["/v1/chat/completions"]  # anthropic was never called
