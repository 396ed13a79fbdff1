"""Numbers and booleans of request bodies are typed strictly, as OpenAI types them: ``"max_tokens": "16"`` is
a 400 ``invalid_type`` naming the parameter (it used to be coerced and accepted), while what the official
``openai`` SDK sends (integers where numbers are expected included: ``temperature=1``) still works, over the
real request path (body reading, pipeline, error mapping) on in-process backends."""

from __future__ import annotations

import asyncio
import json

import httpx
import openai
import pytest

from app.api.embeddings import parse_embedding_request
from app.api.responses import to_chat_request
from app.errors import GatewayError
from app.schemas import ChatCompletionRequest, CompletionRequest
from tests.unit.test_api_params import error_for
from tests.unit.test_fuzz_pipeline import APP

MSG = [{"role": "user", "content": "hi"}]
TOOL = {"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}


def refusal(model, body: dict) -> GatewayError:
    return error_for(body, model)


def test_a_string_max_tokens_gets_openais_400() -> None:
    err = refusal(ChatCompletionRequest, {"model": "m", "messages": MSG, "max_tokens": "16"})
    assert err.to_dict() == {"error": {
        "message": "Invalid type for 'max_tokens': expected an integer, but got a string instead.",
        "type": "invalid_request_error", "param": "max_tokens", "code": "invalid_type"}}
    assert err.status_code == 400


@pytest.mark.parametrize(("fields", "param", "expected", "got"), [
    ({"max_tokens": 16.0}, "max_tokens", "an integer", "a decimal"),
    ({"max_tokens": True}, "max_tokens", "an integer", "a boolean"),
    ({"max_completion_tokens": "5"}, "max_completion_tokens", "an integer", "a string"),
    ({"temperature": "1"}, "temperature", "a decimal", "a string"),
    ({"temperature": True}, "temperature", "a decimal", "a boolean"),
    ({"top_p": "0.5"}, "top_p", "a decimal", "a string"),
    ({"presence_penalty": "0"}, "presence_penalty", "a decimal", "a string"),
    ({"frequency_penalty": False}, "frequency_penalty", "a decimal", "a boolean"),
    ({"n": "1"}, "n", "an integer", "a string"),
    ({"seed": "7"}, "seed", "an integer", "a string"),
    ({"stream": "true"}, "stream", "a boolean", "a string"),
    ({"stream": 1}, "stream", "a boolean", "an integer"),
    ({"stream": True, "stream_options": {"include_usage": "yes"}}, "stream_options.include_usage", "a boolean",
     "a string"),
    ({"cache": 0}, "cache", "a boolean", "an integer"),
    ({"logprobs": "true"}, "logprobs", "a boolean", "a string"),
    ({"logprobs": True, "top_logprobs": "2"}, "top_logprobs", "an integer", "a string"),
    ({"logit_bias": {"50256": "-100"}}, "logit_bias.50256", "a decimal", "a string"),
    ({"store": 0}, "store", "a boolean", "an integer"),
    ({"tools": [TOOL], "parallel_tool_calls": "false"}, "parallel_tool_calls", "a boolean", "a string"),
    ({"tools": [{**TOOL, "function": {**TOOL["function"], "strict": "true"}}]}, "tools.0.function.strict",
     "a boolean", "a string"),
    ({"stop": 5}, "stop", "a string or an array", "an integer"),
])
def test_chat_fields_of_the_wrong_type_are_refused_by_name(fields: dict, param: str, expected: str,
                                                           got: str) -> None:
    err = refusal(ChatCompletionRequest, {"model": "m", "messages": MSG, **fields})
    assert (err.status_code, err.param, err.code) == (400, param, "invalid_type")
    assert err.message == f"Invalid type for '{param}': expected {expected}, but got {got} instead."


@pytest.mark.parametrize(("fields", "param"), [
    ({"max_tokens": "16"}, "max_tokens"),
    ({"logprobs": False}, "logprobs"),  # an integer (0..5) on completions: false was coerced to 0
    ({"echo": 0}, "echo"),
    ({"best_of": "1"}, "best_of"),
])
def test_completion_fields_of_the_wrong_type_are_refused(fields: dict, param: str) -> None:
    err = refusal(CompletionRequest, {"model": "m", "prompt": "hi", **fields})
    assert (err.param, err.code) == (param, "invalid_type")


@pytest.mark.parametrize(("fields", "param"), [({"dimensions": "384"}, "dimensions"),
                                               ({"dimensions": 384.0}, "dimensions")])
def test_embedding_fields_of_the_wrong_type_are_refused(fields: dict, param: str) -> None:
    with pytest.raises(GatewayError) as info:
        parse_embedding_request({"model": "all-minilm-l6-v2", "input": "hi", **fields})
    assert (info.value.param, info.value.code) == (param, "invalid_type")


def test_responses_name_their_own_fields() -> None:
    with pytest.raises(GatewayError) as info:
        to_chat_request({"model": "small", "input": "hi", "max_output_tokens": "16"})
    assert (info.value.param, info.value.code) == ("max_output_tokens", "invalid_type")
    for field, value in (("stream", "yes"), ("store", 0), ("tool_choice", [None])):  # "yes" was taken as true
        with pytest.raises(GatewayError) as info:
            to_chat_request({"model": "small", "input": "hi", field: value})
        assert (info.value.param, info.value.code) == (field, "invalid_type")
    for item, param in (({"type": "function_call_output", "call_id": 5, "output": "x"}, "input.0.call_id"),
                        ({"role": "user", "content": [{"type": "input_text", "text": {}}]}, "input.0.content.0.text"),
                        ({"role": "user", "content": "x", "output": [{"type": "input_text", "text": 1}]},
                         "input.0.output.0.text")):
        with pytest.raises(GatewayError) as info:
            to_chat_request({"model": "small", "input": [item]})
        assert (info.value.param, info.value.code) == (param, "invalid_type")
    with pytest.raises(GatewayError) as info:  # was ignored without tools
        to_chat_request({"model": "small", "input": "hi", "tool_choice": "sometimes"})
    assert info.value.param == "tool_choice"
    body = to_chat_request({"model": "small", "input": "hi", "temperature": "1"})  # passed on: the chat model's 400
    assert refusal(ChatCompletionRequest, body).param == "temperature"


def test_integers_are_numbers_and_the_right_types_pass() -> None:
    req = ChatCompletionRequest.model_validate({"model": "m", "messages": MSG, "temperature": 1, "top_p": 1,
                                                "presence_penalty": 0, "frequency_penalty": -1,
                                                "logit_bias": {"7": 5}, "max_tokens": 16, "seed": 3,
                                                "stream": False, "cache": True, "stream_options": None})
    assert (req.temperature, req.top_p, req.logit_bias, req.max_tokens) == (1.0, 1.0, {"7": 5.0}, 16)
    assert isinstance(req.temperature, float)
    comp = CompletionRequest.model_validate({"model": "m", "prompt": "hi", "logprobs": 2, "echo": False,
                                             "temperature": 0})
    assert comp.logprobs == 2 and comp.temperature == 0.0


def _sdk() -> openai.AsyncOpenAI:
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=APP), base_url="http://gw")
    return openai.AsyncOpenAI(base_url="http://gw/v1", api_key="local", http_client=http, max_retries=0)


def test_the_official_sdks_traffic_is_accepted_end_to_end() -> None:
    async def go() -> None:
        client = _sdk()
        chat = await client.chat.completions.create(
            model="small", messages=MSG, max_tokens=8, temperature=1, top_p=1, seed=1, presence_penalty=0,
            frequency_penalty=0.5, logit_bias={"7": 5}, n=1, logprobs=True, top_logprobs=2, user="u", stop=["x"])
        assert chat.choices[0].message.content is not None
        stream = await client.chat.completions.create(model="small", messages=MSG, max_completion_tokens=8,
                                                      temperature=0.7, stream=True,
                                                      stream_options={"include_usage": True})
        chunks = [c async for c in stream]
        assert chunks and chunks[-1].usage is not None
        comp = await client.completions.create(model="small", prompt="hi", max_tokens=8, temperature=1, logprobs=1)
        assert comp.choices[0].text is not None
        emb = await client.embeddings.create(model="all-minilm-l6-v2", input=["a", "b"])  # base64 by default
        assert len(emb.data) == 2 and len(emb.data[0].embedding) == 384
        resp = await client.responses.create(model="small", input="hi", max_output_tokens=8, temperature=1)
        assert resp.status == "completed"

    asyncio.run(go())


def test_a_string_through_the_sdk_is_openais_400() -> None:
    async def go() -> None:
        client = _sdk()
        with pytest.raises(openai.BadRequestError) as info:
            await client.chat.completions.create(model="small", messages=MSG, extra_body={"max_tokens": "16"})
        assert info.value.status_code == 400
        assert info.value.body == {"message": "Invalid type for 'max_tokens': expected an integer, but got a string "
                                   "instead.", "type": "invalid_request_error", "param": "max_tokens",
                                   "code": "invalid_type"}
        body = {"model": "all-minilm-l6-v2", "input": "hi", "dimensions": "384"}
        raw = await client._client.post("/v1/embeddings", content=json.dumps(body),
                                        headers={"content-type": "application/json"})
        assert raw.status_code == 400 and raw.json()["error"]["param"] == "dimensions"

    asyncio.run(go())
