"""Tool calling through the real graph: named and required tool_choice under guided decoding yield valid
calls even from random weights (unary and streamed, OpenAI-exact shapes), tool history is accepted,
LangChain bind_tools works, tools bypass the cache, the provider fallback honours tools, and
/v1/responses maps onto the same path."""

from __future__ import annotations

import json

import openai
import pytest
from jsonschema import Draft202012Validator

pytestmark = pytest.mark.gateway
PARAMS = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 8}, "unit": {"enum": ["c", "f"]}},
          "required": ["city", "unit"], "additionalProperties": False}
WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Weather in a city.",
                                            "parameters": PARAMS}}
NAMED = {"type": "function", "function": {"name": "get_weather"}}
ASK = [{"role": "user", "content": "Weather in Oslo?"}]


def _client(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key="unused-locally", max_retries=0)


@pytest.mark.parametrize("choice", [NAMED, "required"])
def test_forced_tool_choice_gives_a_valid_call(gateway_url: str, choice) -> None:
    resp = _client(gateway_url).chat.completions.create(model="small", messages=ASK, tools=[WEATHER],
                                                        tool_choice=choice, parallel_tool_calls=False,
                                                        max_tokens=120)
    msg = resp.choices[0].message
    assert resp.choices[0].finish_reason == ("stop" if choice == NAMED else "tool_calls")
    [call] = msg.tool_calls  # parallel_tool_calls false: exactly one
    assert call.type == "function" and call.id.startswith("call_") and call.function.name == "get_weather"
    Draft202012Validator(PARAMS).validate(json.loads(call.function.arguments))


def test_required_with_parallel_calls_gives_only_valid_calls(gateway_url: str) -> None:
    clock = {"type": "function", "function": {"name": "get_time", "parameters": {
        "type": "object", "properties": {"zone": {"enum": ["utc", "cet"]}}, "required": ["zone"],
        "additionalProperties": False}}}
    resp = _client(gateway_url).chat.completions.create(model="small", messages=ASK, tools=[WEATHER, clock],
                                                        tool_choice="required", max_tokens=64, seed=1)
    choice = resp.choices[0]
    if choice.finish_reason == "length":  # random weights may keep adding calls until max_tokens
        assert choice.message.tool_calls is None and choice.message.content.startswith("[")
        return
    params = {"get_weather": PARAMS, "get_time": clock["function"]["parameters"]}
    assert choice.finish_reason == "tool_calls" and choice.message.tool_calls
    for call in choice.message.tool_calls:
        Draft202012Validator(params[call.function.name]).validate(json.loads(call.function.arguments))


def test_streamed_tool_call_deltas_are_openai_shaped(gateway_url: str) -> None:
    stream = _client(gateway_url).chat.completions.create(model="small", messages=ASK, tools=[WEATHER],
                                                          tool_choice=NAMED, max_tokens=120, stream=True)
    deltas = [d for c in stream if c.choices for d in (c.choices[0].delta.tool_calls or [])]
    assert deltas[0].id.startswith("call_") and deltas[0].function.name == "get_weather" and deltas[0].index == 0
    assert all(d.index == 0 and d.id is None for d in deltas[1:])
    Draft202012Validator(PARAMS).validate(json.loads("".join(d.function.arguments or "" for d in deltas)))


def test_tool_history_round_trip_and_no_cache(client) -> None:
    first = client.post("/v1/chat/completions", json={"model": "small", "messages": ASK, "tools": [WEATHER],
                                                       "tool_choice": NAMED, "max_tokens": 120, "temperature": 0})
    assert first.status_code == 200 and first.headers["x-llmgw-cache"] == "bypass"
    msg = first.json()["choices"][0]["message"]
    assert msg["content"] is None
    history = [*ASK, msg, {"role": "tool", "tool_call_id": msg["tool_calls"][0]["id"], "content": "12 C, sunny"}]
    second = client.post("/v1/chat/completions", json={"model": "small", "messages": history, "tools": [WEATHER],
                                                        "max_tokens": 8, "temperature": 0})
    assert second.status_code == 200, second.text
    assert second.json()["choices"][0]["finish_reason"] in ("stop", "length", "tool_calls")


@pytest.mark.parametrize(("extra", "param"), [
    ({"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "launch"}}}, "tool_choice"),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "whatever"}}}]},
     "tools.0.function.parameters"),
    ({"tool_choice": "required"}, "tool_choice"),
    ({"messages": [{"role": "tool", "content": "orphan"}]}, "messages.0"),
])
def test_bad_tools_are_400(client, extra: dict, param: str) -> None:
    resp = client.post("/v1/chat/completions", json={"model": "small", "messages": ASK, "max_tokens": 4, **extra})
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"]["param"] == param


def test_langchain_bind_tools(gateway_url: str) -> None:
    from typing import Literal

    from langchain_openai import ChatOpenAI
    from pydantic import BaseModel, Field

    class GetWeather(BaseModel):
        """Weather in a city."""

        city: str = Field(max_length=8)  # bounded: random weights would otherwise fill max_tokens
        unit: Literal["c", "f"]

    llm = ChatOpenAI(model="small", base_url=f"{gateway_url}/v1", api_key="unused", max_tokens=120, max_retries=0)
    msg = llm.bind_tools([GetWeather], tool_choice="GetWeather").invoke("Weather in Oslo?")
    [call] = msg.tool_calls
    assert call["name"] == "GetWeather" and call["id"] and GetWeather.model_validate(call["args"])


def test_responses_api_text_and_forced_tool(gateway_url: str) -> None:
    client = _client(gateway_url)
    resp = client.responses.create(model="small", input="Say hi.", instructions="Be brief.", max_output_tokens=6)
    assert resp.object == "response" and resp.output_text and resp.usage.output_tokens == 6
    assert resp.status == "incomplete"
    tool = {"type": "function", "name": "get_weather", "parameters": PARAMS, "strict": True}
    resp = client.responses.create(model="small", input="Weather?", tools=[tool], max_output_tokens=120,
                                   tool_choice={"type": "function", "name": "get_weather"})
    [call] = [o for o in resp.output if o.type == "function_call"]
    Draft202012Validator(PARAMS).validate(json.loads(call.arguments))
    events = list(client.responses.create(model="small", input="Say hi.", max_output_tokens=5, stream=True))
    kinds = [e.type for e in events]
    assert kinds[0] == "response.created" and kinds[-1] in ("response.completed", "response.incomplete")
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert deltas and deltas == events[-1].response.output_text
