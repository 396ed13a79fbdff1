"""/v1/responses translations: request -> chat body (validated by the chat model), chat result ->
Response object and chunk stream -> Responses SSE events, both parsed with the official SDK's types."""

from __future__ import annotations

import json

import pytest
from openai.types.responses import Response

from app.api.responses import ResponsesStream, to_chat_request, to_response
from app.errors import InvalidRequestError, UpstreamError
from app.generation import GenerationChunk
from app.schemas import ChatCompletionRequest, chat_response

TOOL = {"type": "function", "name": "get_weather", "description": "w", "strict": True, "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"], "additionalProperties": False}}


def test_request_maps_onto_a_valid_chat_request() -> None:
    body = {"model": "small", "instructions": "be brief", "max_output_tokens": 20, "temperature": 0.2,
            "input": [{"role": "user", "content": [{"type": "input_text", "text": "weather?"}]},
                      {"type": "function_call", "call_id": "call_1", "name": "get_weather",
                       "arguments": "{\"city\": \"Oslo\"}"},
                      {"type": "function_call_output", "call_id": "call_1", "output": "12 C"}],
            "tools": [TOOL], "tool_choice": {"type": "function", "name": "get_weather"},
            "text": {"format": {"type": "json_schema", "name": "w", "schema": {"type": "object"}, "strict": True}},
            "stream": True}
    chat = to_chat_request(body)
    assert chat["messages"][0] == {"role": "developer", "content": "be brief"}
    assert chat["messages"][2]["tool_calls"][0]["function"]["name"] == "get_weather"
    assert chat["messages"][3] == {"role": "tool", "tool_call_id": "call_1", "content": "12 C"}
    assert chat["tools"][0]["function"]["parameters"] == TOOL["parameters"]
    assert chat["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert chat["max_completion_tokens"] == 20 and chat["stream_options"] == {"include_usage": True}
    del chat["response_format"]  # a forced tool choice and a format together are refused by chat; check apart
    ChatCompletionRequest.model_validate(chat)
    fmt = to_chat_request({"model": "m", "input": "hi", "text": {"format": body["text"]["format"]}})
    assert fmt["response_format"]["json_schema"]["schema"] == {"type": "object"}
    ChatCompletionRequest.model_validate(fmt)


@pytest.mark.parametrize(("body", "param"), [
    ({"previous_response_id": "resp_1"}, "previous_response_id"),
    ({"conversation": "c"}, "conversation"),
    ({"store": True}, "store"),
    ({"background": True}, "background"),
    ({"reasoning": {"effort": "low"}}, "reasoning"),
    ({"include": ["file_search_call.results"]}, "include"),
    ({"tools": [{"type": "web_search"}]}, "tools.0.type"),
    ({"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]},
     "input.0.content.0.type"),
    ({"input": []}, "input"),
    ({"text": {"format": {"type": "yaml"}}}, "text.format.type"),
    ({"frobnicate": 1}, "frobnicate"),
])
def test_refused_by_name(body: dict, param: str) -> None:
    with pytest.raises(InvalidRequestError) as info:
        to_chat_request({"model": "m", "input": "hi", **body})
    assert info.value.param == param


def test_chat_result_becomes_a_response_the_sdk_parses() -> None:
    body = {"model": "small", "input": "hi", "tools": [TOOL]}
    calls = [{"index": 0, "id": "call_9", "type": "function", "function": {"name": "get_weather",
                                                                             "arguments": "{\"city\":\"x\"}"}}]
    chat = chat_response("chatcmpl-1", "tiny-small", "Hello", "tool_calls", 7, 3, tool_calls=calls)
    resp = Response.model_validate(to_response(body, chat))
    assert resp.status == "completed" and resp.output_text == "Hello"
    assert [o.type for o in resp.output] == ["message", "function_call"]
    assert resp.output[1].call_id == "call_9" and json.loads(resp.output[1].arguments) == {"city": "x"}
    assert resp.usage.input_tokens == 7 and resp.usage.output_tokens == 3
    cut = Response.model_validate(to_response(body, chat_response("c", "m", "Hel", "length", 1, 1)))
    assert cut.status == "incomplete" and cut.incomplete_details.reason == "max_output_tokens"


def _events(raw: list[bytes]) -> list[dict]:
    out = []
    for b in raw:
        head, data = b.decode().strip().split("\n", 1)
        event = json.loads(data.removeprefix("data: "))
        assert head == f"event: {event['type']}"
        out.append(event)
    return out


def test_stream_events_text_and_tool_call() -> None:
    from openai.types.responses import ResponseStreamEvent
    from pydantic import TypeAdapter

    s = ResponsesStream({"model": "small", "input": "hi"}, "tiny-small")
    raw = s.start()
    raw += s.feed(GenerationChunk("Hel", None, 4, 1, "tiny-small"))
    raw += s.feed(GenerationChunk("lo", None, 4, 2, "tiny-small"))
    raw += s.feed(GenerationChunk("", None, 4, 3, "tiny-small", [{"index": 0, "id": "call_1", "type": "function",
                                                                  "function": {"name": "f", "arguments": ""}}]))
    raw += s.feed(GenerationChunk("", "tool_calls", 4, 5, "tiny-small", [{"index": 0, "function": {
        "arguments": "{\"a\":1}"}}]))
    raw += s.done()
    events = _events(raw)
    adapter = TypeAdapter(ResponseStreamEvent)
    for e in events:
        adapter.validate_python(e)
    kinds = [e["type"] for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"] and kinds[-1] == "response.completed"
    assert "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta") == "Hello"
    assert [e["sequence_number"] for e in events] == list(range(1, len(events) + 1))
    final = Response.model_validate(events[-1]["response"])
    assert final.output_text == "Hello" and final.output[1].arguments == "{\"a\":1}"
    assert final.usage.output_tokens == 5
    assert [e["output_index"] for e in events if e["type"] == "response.output_item.done"] == [0, 1]


def test_stream_failure_event() -> None:
    s = ResponsesStream({"model": "m", "input": "hi"}, "m")
    s.start()
    err = UpstreamError("bad json", code="json_schema_validation_failed")
    events = _events(s.failed(err))
    assert events[0]["type"] == "error" and events[0]["code"] == "json_schema_validation_failed"
    assert events[1]["type"] == "response.failed" and events[1]["response"]["status"] == "failed"


@pytest.mark.parametrize("role", [{}, ["user"], 5, None])
def test_a_role_that_is_not_a_string_is_a_400(role) -> None:
    """Found by fuzzing: an unhashable role (a dict) raised TypeError, a 500."""
    with pytest.raises(InvalidRequestError) as exc:
        to_chat_request({"model": "small", "input": [{"type": "message", "role": role, "content": "x"}]})
    assert exc.value.param == "input.0.role"
