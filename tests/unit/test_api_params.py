"""Every OpenAI chat/completions parameter is honoured or refused by name; bad tools, schemas and
formats are 400s naming the field (never 500s); unknown fields are 400 ``unknown_parameter``."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from app.errors import GatewayError, InvalidRequestError
from app.schemas import ChatCompletionRequest, CompletionRequest, chat_response, validation_error

MSG = [{"role": "user", "content": "hi"}]
TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}


def error_for(body: dict, model=ChatCompletionRequest) -> GatewayError:
    try:
        model.model_validate(body)
    except ValidationError as exc:
        return validation_error(exc)
    except GatewayError as exc:
        return exc
    raise AssertionError(f"accepted: {body}")


def chat(**fields) -> dict:
    return {"model": "m", "messages": MSG, **fields}


@pytest.mark.parametrize(("fields", "param", "code"), [
    # refused values of real OpenAI parameters
    ({"n": 2}, "n", "unsupported_parameter"),
    ({"store": True}, "store", "unsupported_parameter"),
    ({"service_tier": "priority"}, "service_tier", "unsupported_parameter"),
    ({"modalities": ["text", "audio"]}, "modalities", "unsupported_parameter"),
    ({"audio": {"voice": "alloy", "format": "wav"}}, "audio", "unsupported_parameter"),
    ({"prediction": {"type": "content", "content": "x"}}, "prediction", "unsupported_parameter"),
    ({"reasoning_effort": "low"}, "reasoning_effort", "unsupported_parameter"),
    ({"verbosity": "low"}, "verbosity", "unsupported_parameter"),
    ({"web_search_options": {}}, "web_search_options", "unsupported_parameter"),
    ({"functions": [{"name": "f"}]}, "functions", "unsupported_parameter"),
    ({"function_call": "auto"}, "function_call", "unsupported_parameter"),
    ({"stream": True, "stream_options": {"include_obfuscation": True}}, "stream_options.include_obfuscation",
     "unsupported_parameter"),
    # unknown fields, top level and nested
    ({"guided_json": {}}, "guided_json", "unknown_parameter"),
    ({"messages": [{"role": "user", "content": "x", "weight": 1}]}, "messages.0.weight", "unknown_parameter"),
    ({"tools": [{**TOOL, "extra": 1}]}, "tools.0.extra", "unknown_parameter"),
    # content the text-only models cannot read
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]},
     "messages.0.content.0.type", "unsupported_parameter"),
])
def test_refused_by_name(fields: dict, param: str, code: str) -> None:
    err = error_for(chat(**fields))
    assert err.status_code == 400 and err.param == param and err.code == code, err.to_dict()
    assert param.split(".")[0] in err.message


@pytest.mark.parametrize(("fields", "param"), [
    ({"response_format": {"type": "xml"}}, "response_format"),
    ({"response_format": "json"}, "response_format"),
    ({"response_format": {"type": "json_schema"}}, "response_format.json_schema"),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "bad name!", "schema": {}}}},
     "response_format.json_schema.name"),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "objekt"}}}},
     "response_format.json_schema.schema"),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"minItems": -1}}}},
     "response_format.json_schema.schema"),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": [1]}}},
     "response_format.json_schema.schema"),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": 5}}}]},
     "tools.0.function.parameters"),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": "not a schema"}}]},
     "tools.0.function.parameters"),
    ({"tools": [{"type": "function", "function": {"name": "has space"}}]}, "tools.0.function.name"),
    ({"tools": [TOOL, TOOL]}, "tools.1.function.name"),
    ({"tools": [{"type": "custom", "custom": {"name": "f"}}]}, "tools.0.type"),
    ({"tools": []}, "tools"),
    ({"tools": [TOOL], "tool_choice": {"type": "function", "function": {"name": "nope"}}}, "tool_choice"),
    ({"tools": [TOOL], "tool_choice": "sometimes"}, "tool_choice"),
    ({"tool_choice": "required"}, "tool_choice"),
    ({"parallel_tool_calls": False}, "parallel_tool_calls"),
    ({"top_logprobs": 3}, "top_logprobs"),
    ({"logprobs": True, "top_logprobs": 21}, "top_logprobs"),
    ({"logit_bias": {"abc": 1}}, "logit_bias"),
    ({"logit_bias": {"5": 101}}, "logit_bias"),
    ({"stream_options": {"include_usage": True}}, "stream_options"),
    ({"messages": [{"role": "tool", "content": "42"}]}, "messages.0"),
    ({"messages": [{"role": "user", "content": "x", "tool_call_id": "c"}]}, "messages.0"),
    ({"messages": [{"role": "user", "content": "x", "tool_calls": []}]}, "messages.0"),
    ({"messages": [{"role": "assistant", "content": None}]}, "messages.0"),
    ({"messages": [{"role": "assistant", "tool_calls": [{"id": "c", "type": "function", "function": {
        "name": "f"}}]}]}, "messages.0.tool_calls.0.function.arguments"),
])
def test_bad_input_is_400_naming_the_field(fields: dict, param: str) -> None:
    err = error_for(chat(**fields))
    assert isinstance(err, InvalidRequestError) and err.status_code == 400 and err.param == param, err.to_dict()


@pytest.mark.parametrize(("schema", "keyword"), [
    ({"type": "array", "items": {"type": "integer"}, "uniqueItems": True}, "uniqueItems"),
    ({"type": "object", "properties": {"code": {"type": "string", "pattern": "^[A-Z]+$", "maxLength": 4}}},
     "maxLength"),
    ({"type": "object", "properties": {"v": {"not": {"type": "string"}}}}, "not"),
    ({"type": "object", "properties": {"n": {"type": "number", "multipleOf": 0.5}}}, "multipleOf"),
    ({"allOf": [{"type": "string"}, {"enum": ["a"]}]}, "allOf"),
    ({"type": "string", "format": "credit-card"}, "format"),
    ({"$ref": "https://example.com/schema.json"}, "$ref"),
])
def test_unenforceable_schema_keywords_are_refused_by_name(schema: dict, keyword: str) -> None:
    fmt = {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}
    err = error_for(chat(response_format=fmt))
    assert err.param == "response_format.json_schema.schema" and err.code == "unsupported_schema_keyword"
    assert f"'{keyword}'" in err.message


def test_property_names_that_look_like_keywords_are_fine() -> None:
    schema = {"type": "object", "properties": {"not": {"type": "string"}, "if": {"type": "integer"}},
              "required": ["not", "if"]}
    req = ChatCompletionRequest.model_validate(chat(response_format={"type": "json_schema", "json_schema": {
        "name": "x", "schema": schema, "strict": True}}))
    assert req.sampling_fields()["structured"]["json_schema"]["schema"] == schema


def test_forced_tool_parameters_must_be_decodable_but_auto_ones_only_valid() -> None:
    tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "array", "uniqueItems": True}}}
    ChatCompletionRequest.model_validate(chat(tools=[tool]))  # auto: the model writes it, we only parse it
    err = error_for(chat(tools=[tool], tool_choice="required"))
    assert err.param == "tools.0.function.parameters" and err.code == "unsupported_schema_keyword"


def test_honoured_fields_reach_the_generation_request() -> None:
    history = [{"role": "system", "content": "s"}, {"role": "user", "content": "weather?"},
               {"role": "assistant", "content": None, "tool_calls": [{"id": "call_1", "type": "function", "function": {
                   "name": "get_weather", "arguments": "{\"city\": \"Oslo\"}"}}]},
               {"role": "tool", "tool_call_id": "call_1", "content": "12 C"}]
    req = ChatCompletionRequest.model_validate({
        "model": "m", "messages": history, "tools": [TOOL], "tool_choice": {"type": "function", "function": {
            "name": "get_weather"}}, "parallel_tool_calls": False, "logprobs": True, "top_logprobs": 2,
        "logit_bias": {"17": -100}, "metadata": {"k": "v"}, "user": "u", "store": False, "service_tier": "auto",
        "modalities": ["text"], "safety_identifier": "s", "prompt_cache_key": "p", "seed": 3, "n": 1,
        "stream": True, "stream_options": {"include_usage": True}, "cache": False,
        "prompt_ref": {"name": "x"}})
    gen = req.generation_fields()
    assert gen["messages"][2]["tool_calls"][0]["function"]["name"] == "get_weather"
    assert gen["messages"][2]["content"] == "" and gen["messages"][3]["tool_call_id"] == "call_1"
    assert gen["tools"] == [TOOL] and gen["parallel_tool_calls"] is False
    assert gen["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert req.sampling_fields() == {"structured": None, "logprobs": 2, "logit_bias": {"17": -100},
                                     "ignore_eos": False, "min_tokens": 0}
    assert req.extensions == {"prompt_ref": {"name": "x"}} and req.include_usage


def test_response_format_variants() -> None:
    text = ChatCompletionRequest.model_validate(chat(response_format={"type": "text"}))
    assert text.sampling_fields()["structured"] is None
    obj = ChatCompletionRequest.model_validate(chat(response_format={"type": "json_object"}))
    assert obj.sampling_fields()["structured"] == {"type": "json_object"}


def test_completions_parameters() -> None:
    assert CompletionRequest.model_validate({"model": "m", "prompt": "x", "logprobs": 2}).sampling_fields() == {
        "logprobs": 2, "logit_bias": None, "ignore_eos": False, "min_tokens": 0}
    for fields, param in (({"echo": True}, "echo"), ({"best_of": 2}, "best_of"), ({"suffix": "x"}, "suffix"),
                          ({"prompt": [1, 2, 3]}, "prompt"), ({"logprobs": 6}, "logprobs"), ({"n": 3}, "n"),
                          ({"tools": [TOOL]}, "tools")):
        err = error_for({"model": "m", "prompt": "x", **fields}, CompletionRequest)
        assert err.status_code == 400 and err.param == param, (fields, err.to_dict())


def test_chat_response_with_tool_calls_and_logprobs() -> None:
    calls = [{"index": 0, "id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]
    lp = [{"token": "a", "logprob": -0.1, "bytes": [97], "top_logprobs": []}]
    body = chat_response("id", "m", "", "tool_calls", 3, 4, tool_calls=calls, logprobs=lp)
    choice = body["choices"][0]
    assert choice["message"] == {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}
    assert choice["logprobs"] == {"content": lp, "refusal": None}
    assert chat_response("id", "m", "hi", "stop", 1, 1)["choices"][0]["message"] == {"role": "assistant",
                                                                                      "content": "hi"}


def test_vllm_extras_ignore_eos_and_min_tokens() -> None:
    """vLLM's own sampling extras (what load testers send for fixed-length answers): honoured, typed, bounded."""
    from app.generation import GenerationRequest, SamplingOptions
    from app.pipeline.build_request import generation_request

    for model, body in ((ChatCompletionRequest, chat()), (CompletionRequest, {"model": "m", "prompt": "x"})):
        req = model.model_validate({**body, "ignore_eos": True, "min_tokens": 4, "max_tokens": 8})
        gen = generation_request(req, "r1", "t")
        assert (gen.sampling.ignore_eos, gen.sampling.min_tokens) == (True, 4)
        assert {"ignore_eos", "min_tokens"} <= gen.needs()  # no provider's wire has them: providers are skipped
        assert gen.sampling.as_dict()["ignore_eos"] is True  # part of the cache key
        plain = generation_request(model.model_validate({**body, "max_tokens": 8}), "r2", "t")
        assert "ignore_eos" not in plain.sampling.as_dict() and not plain.needs()  # plain keys unchanged
    assert SamplingOptions().as_dict() == GenerationRequest("r", "m", prompt="x").sampling.as_dict()
    for fields, param in (({"min_tokens": 9, "max_tokens": 8}, "min_tokens"),
                          ({"min_tokens": 9, "max_completion_tokens": 8}, "min_tokens"),
                          ({"min_tokens": -1}, "min_tokens"), ({"ignore_eos": "true"}, "ignore_eos"),
                          ({"min_tokens": "3"}, "min_tokens"),
                          ({"ignore_eos": True, "response_format": {"type": "json_object"}}, "ignore_eos"),
                          ({"min_tokens": 2, "tools": [TOOL], "tool_choice": "required"}, "min_tokens")):
        err = error_for(chat(**fields))
        assert err.status_code == 400 and err.param == param, (fields, err.to_dict())
    auto = ChatCompletionRequest.model_validate(chat(ignore_eos=True, tools=[TOOL], tool_choice="auto"))
    assert auto.ignore_eos  # unguided tool calls may run to max_tokens
