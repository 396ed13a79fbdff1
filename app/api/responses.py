"""``POST /v1/responses``, the stateless subset, as pure translations onto chat completions.

:func:`to_chat_request`: a Responses request body -> a chat-completions body (then validated and run
by the chat pipeline like any other). :func:`to_response`: the chat completion -> a Responses
object. :class:`ResponsesStream`: GenerationChunks -> Responses SSE events (``response.created``,
``response.output_text.delta``, ``response.function_call_arguments.delta``, ``response.completed``).
State (``previous_response_id``, ``conversation``, ``store``, ``background``) is refused by name.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from app.api.request_validation import type_error
from app.errors import GatewayError, InvalidRequestError
from app.generation import GenerationChunk

KNOWN = {"model", "input", "instructions", "tools", "tool_choice", "parallel_tool_calls", "text", "stream",
         "temperature", "top_p", "max_output_tokens", "metadata", "user", "store", "include", "truncation",
         "service_tier", "safety_identifier", "prompt_cache_key", "stream_options", "previous_response_id",
         "conversation", "background", "reasoning", "prompt", "max_tool_calls", "top_logprobs", "cache"}
_REFUSED = {"previous_response_id": "stateless: send the whole conversation in 'input'",
            "conversation": "stateless: send the whole conversation in 'input'",
            "background": "no background responses", "prompt": "no stored prompt templates (use prompt_ref on chat)",
            "reasoning": "the models do not reason", "max_tool_calls": "no built-in tool loop",
            "top_logprobs": "no logprobs on /v1/responses (use chat completions)"}
_TEXT_ROLES = {"user", "system", "developer", "assistant"}
# typed strictly, as OpenAI types them (the other typed fields are validated by the chat model under their own name)
_TYPES: dict[str, tuple[tuple[type, ...], str]] = {
    "stream": ((bool,), "a boolean"), "store": ((bool,), "a boolean"), "max_output_tokens": ((int,), "an integer"),
    "instructions": ((str,), "a string"), "tools": ((list,), "an array"), "text": ((dict,), "an object"),
    "tool_choice": ((str, dict), "a string or an object")}


def _refuse(param: str, why: str) -> InvalidRequestError:
    return InvalidRequestError(f"'{param}' is not supported by this gateway: {why}.", param=param,
                               code="unsupported_parameter")


def _content_text(content: Any, param: str) -> str:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise InvalidRequestError(f"'{param}' must be a string or a list of content parts.", param=param)
    parts = []
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in ("input_text", "output_text", "text"):
            if "text" not in part:
                raise InvalidRequestError(f"Missing required parameter: '{param}.{j}.text'.", param=f"{param}.{j}.text",
                                          code="missing_required_parameter")
            parts.append(_string(part, "text", f"{param}.{j}.text", ""))
        else:
            raise _refuse(f"{param}.{j}.type", f"content parts of type '{kind}' (the models are text-only)")
    return "".join(parts)


def _string(obj: dict[str, Any], key: str, param: str, default: str) -> str:
    """``obj[key]``, which must be a string when present (typed strictly, as OpenAI types it)."""
    if key not in obj:
        return default
    value = obj[key]
    if not isinstance(value, str):
        raise type_error(param, "a string", value)
    return value


def _messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    if body.get("instructions"):
        messages.append({"role": "developer", "content": _content_text(body["instructions"], "instructions")})
    items = body.get("input")
    if isinstance(items, str):
        return [*messages, {"role": "user", "content": items}]
    if not isinstance(items, list) or not items:
        raise InvalidRequestError("'input' must be a string or a non-empty list of items.", param="input")
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise InvalidRequestError(f"'input.{i}' must be an object.", param=f"input.{i}")
        for key in ("id", "call_id", "name", "arguments"):  # typed strictly on every item, as documented
            _string(item, key, f"input.{i}.{key}", "")
        for key in ("content", "output"):
            if key in item:
                _content_text(item[key], f"input.{i}.{key}")
        kind = item.get("type", "message")
        if kind == "message":
            if not isinstance(item.get("role"), str) or item["role"] not in _TEXT_ROLES:  # a dict is unhashable
                raise InvalidRequestError(f"'input.{i}.role' must be one of {sorted(_TEXT_ROLES)}.",
                                          param=f"input.{i}.role")
            messages.append({"role": item["role"], "content": _content_text(item.get("content", ""),
                                                                            f"input.{i}.content")})
        elif kind == "function_call":
            call_id = _string(item, "call_id", f"input.{i}.call_id", "")
            call = {"id": call_id or _string(item, "id", f"input.{i}.id", ""),
                    "type": "function", "function": {"name": _string(item, "name", f"input.{i}.name", ""),
                                                     "arguments": _string(item, "arguments", f"input.{i}.arguments",
                                                                          "{}")}}
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "assistant" and "tool_calls" in last:
                last["tool_calls"].append(call)
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            output = item.get("output", "")
            messages.append({"role": "tool", "tool_call_id": _string(item, "call_id", f"input.{i}.call_id", ""),
                             "content": output if isinstance(output, str) else _content_text(output,
                                                                                               f"input.{i}.output")})
        elif kind == "reasoning":
            continue  # earlier reasoning items carry nothing our models can read
        else:
            raise _refuse(f"input.{i}.type", f"input items of type '{kind}'")
    return messages


def _tools(tools: Any) -> list[dict[str, Any]] | None:
    if tools is None:
        return None
    if not isinstance(tools, list):
        raise InvalidRequestError("'tools' must be a list.", param="tools")
    out = []
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict) or tool.get("type") != "function":
            kind = tool.get("type") if isinstance(tool, dict) else None
            raise _refuse(f"tools.{i}.type", f"built-in tools ('{kind}'); only function tools")
        fn = {k: tool[k] for k in ("name", "description", "parameters", "strict") if tool.get(k) is not None}
        out.append({"type": "function", "function": fn})
    return out or None


def _tool_choice(choice: Any) -> Any:
    if isinstance(choice, dict):
        if choice.get("type") != "function":
            raise _refuse("tool_choice.type", f"tool_choice of type '{choice.get('type')}'")
        return {"type": "function", "function": {"name": choice.get("name", "")}}
    if choice not in ("none", "auto", "required"):
        raise InvalidRequestError(f"Invalid value for 'tool_choice': {choice!r} (none, auto, required or an object).",
                                  param="tool_choice")
    return choice


def _response_format(text: Any) -> dict[str, Any] | None:
    if text is None:
        return None
    if not isinstance(text, dict):
        raise InvalidRequestError("'text' must be an object.", param="text")
    if text.get("verbosity") not in (None, "medium"):
        raise _refuse("text.verbosity", "no verbosity control")
    fmt = text.get("format")
    if fmt is None or (isinstance(fmt, dict) and fmt.get("type") == "text"):
        return None
    if not isinstance(fmt, dict):
        raise InvalidRequestError("'text.format' must be an object.", param="text.format")
    if fmt.get("type") == "json_object":
        return {"type": "json_object"}
    if fmt.get("type") == "json_schema":
        inner = {k: fmt[k] for k in ("name", "description", "schema", "strict") if k in fmt}
        return {"type": "json_schema", "json_schema": inner}
    raise InvalidRequestError(f"'text.format.type' must be text, json_object or json_schema, not "
                              f"{fmt.get('type')!r}.", param="text.format.type")


def to_chat_request(body: dict[str, Any]) -> dict[str, Any]:
    """The chat-completions body for a Responses request (400 naming any field it cannot honour)."""
    for key in body:
        if key not in KNOWN:
            raise InvalidRequestError(f"Unrecognized request argument supplied: '{key}'.", param=key,
                                      code="unknown_parameter")
    for key, (kinds, expected) in _TYPES.items():  # the fields not passed on to the chat model as they are
        value = body.get(key)
        if value is not None and (not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds)):
            raise type_error(key, expected, value)
    for key, why in _REFUSED.items():
        if body.get(key) is not None:
            raise _refuse(key, why)
    if body.get("store"):
        raise _refuse("store", "responses are not stored (store: false only)")
    if body.get("include"):
        raise _refuse("include", "no extra output includes")
    if body.get("truncation") not in (None, "disabled"):
        raise _refuse("truncation", "no automatic truncation ('disabled' only)")
    chat: dict[str, Any] = {"model": body.get("model"), "messages": _messages(body)}
    for src, dst in (("temperature", "temperature"), ("top_p", "top_p"), ("max_output_tokens", "max_completion_tokens"),
                     ("metadata", "metadata"), ("user", "user"), ("parallel_tool_calls", "parallel_tool_calls"),
                     ("service_tier", "service_tier"), ("safety_identifier", "safety_identifier"),
                     ("prompt_cache_key", "prompt_cache_key"), ("cache", "cache")):
        if body.get(src) is not None:
            chat[dst] = body[src]
    tools = _tools(body.get("tools"))
    choice = _tool_choice(body["tool_choice"]) if body.get("tool_choice") is not None else None
    if tools:
        chat["tools"] = tools
        if choice is not None:
            chat["tool_choice"] = choice
    fmt = _response_format(body.get("text"))
    if fmt is not None:
        chat["response_format"] = fmt
    if body.get("stream") is not None:
        chat["stream"] = body["stream"]  # a non-boolean is refused by the chat model, naming 'stream'
    if body.get("stream") is True:
        chat["stream_options"] = {"include_usage": True}
    return chat


def _usage(prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
    return {"input_tokens": prompt_tokens, "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
            "output_tokens": completion_tokens, "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": prompt_tokens + completion_tokens}


def _message_item(text: str, status: str = "completed", item_id: str | None = None) -> dict[str, Any]:
    return {"type": "message", "id": item_id or f"msg_{uuid.uuid4().hex}", "status": status, "role": "assistant",
            "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}] if text else []}


def _call_item(call: dict[str, Any], status: str = "completed", item_id: str | None = None) -> dict[str, Any]:
    fn = call.get("function") or {}
    return {"type": "function_call", "id": item_id or f"fc_{uuid.uuid4().hex}", "call_id": call.get("id", ""),
            "name": fn.get("name", ""), "arguments": fn.get("arguments", ""), "status": status}


def response_object(body: dict[str, Any], rid: str, model: str, output: list[dict[str, Any]], *,
                    status: str = "completed", finish: str | None = "stop", usage: dict[str, Any] | None = None,
                    created: float | None = None, error: dict[str, Any] | None = None) -> dict[str, Any]:
    incomplete = status == "completed" and finish == "length"
    fmt = (body.get("text") or {}).get("format") or {"type": "text"}
    return {"id": rid, "object": "response", "created_at": int(created or time.time()),
            "status": "incomplete" if incomplete else status, "model": model, "output": output,
            "incomplete_details": {"reason": "max_output_tokens"} if incomplete else None, "error": error,
            "instructions": body.get("instructions"), "tools": body.get("tools") or [],
            "tool_choice": body.get("tool_choice") or "auto", "parallel_tool_calls": body.get("parallel_tool_calls",
                                                                                                True),
            "temperature": body.get("temperature"), "top_p": body.get("top_p"),
            "max_output_tokens": body.get("max_output_tokens"), "metadata": body.get("metadata") or {},
            "previous_response_id": None, "reasoning": None, "store": False, "truncation": "disabled",
            "text": {"format": fmt}, "usage": usage, "user": body.get("user")}


def response_id() -> str:
    return f"resp_{uuid.uuid4().hex}"


def to_response(body: dict[str, Any], chat: dict[str, Any], rid: str | None = None) -> dict[str, Any]:
    """A Responses object from a chat.completion (as app.schemas.chat_response builds it)."""
    choice = chat["choices"][0]
    message = choice["message"]
    output = [_message_item(message["content"])] if message.get("content") else []
    output += [_call_item(c) for c in message.get("tool_calls") or ()]
    u = chat.get("usage") or {}
    return response_object(body, rid or response_id(), chat.get("model", ""), output, finish=choice["finish_reason"],
                           usage=_usage(u.get("prompt_tokens", 0), u.get("completion_tokens", 0)),
                           created=chat.get("created"))


def sse(event: dict[str, Any]) -> bytes:
    return f"event: {event['type']}\ndata: {json.dumps(event, separators=(',', ':'))}\n\n".encode()


class ResponsesStream:
    """GenerationChunks of one answer -> Responses SSE events; feed each chunk, then :meth:`done` or :meth:`failed`."""

    def __init__(self, body: dict[str, Any], model: str, rid: str | None = None) -> None:
        self.body, self.model, self.rid = body, model, rid or response_id()
        self.created = time.time()
        self.seq = 0
        self.output: list[dict[str, Any]] = []  # finished items
        self.text_item: dict[str, Any] | None = None
        self.text = ""
        self.calls: dict[int, dict[str, Any]] = {}  # tool-call index -> open function_call item
        self.last = GenerationChunk()
        self.next_index = 0

    def _event(self, kind: str, **fields: Any) -> bytes:
        self.seq += 1
        return sse({"type": kind, "sequence_number": self.seq, **fields})

    def _snapshot(self, status: str, **kw: Any) -> dict[str, Any]:
        return response_object(self.body, self.rid, self.model, list(self.output), status=status,
                               created=self.created, **kw)

    def start(self) -> list[bytes]:
        snap = self._snapshot("in_progress")
        return [self._event("response.created", response=snap), self._event("response.in_progress", response=snap)]

    def _open(self, item: dict[str, Any]) -> bytes:
        item["_index"] = self.next_index
        self.next_index += 1
        return self._event("response.output_item.added", output_index=item["_index"], item=_public(item))

    def feed(self, chunk: GenerationChunk) -> list[bytes]:
        self.last = chunk
        out: list[bytes] = []
        if chunk.text:
            if self.text_item is None:
                self.text_item = _message_item("", "in_progress")
                out.append(self._open(self.text_item))
                out.append(self._event("response.content_part.added", item_id=self.text_item["id"],
                                       output_index=self.text_item["_index"], content_index=0,
                                       part={"type": "output_text", "text": "", "annotations": []}))
            self.text += chunk.text
            out.append(self._event("response.output_text.delta", item_id=self.text_item["id"],
                                   output_index=self.text_item["_index"], content_index=0, delta=chunk.text,
                                   logprobs=[]))
        for delta in chunk.tool_calls or ():
            index = delta.get("index", 0)
            item = self.calls.get(index)
            fn = delta.get("function") or {}
            if item is None:
                item = self.calls[index] = _call_item({"id": delta.get("id", ""), "function": {
                    "name": fn.get("name", ""), "arguments": ""}}, "in_progress")
                out.append(self._open(item))
            if fn.get("arguments"):
                item["arguments"] += fn["arguments"]
                out.append(self._event("response.function_call_arguments.delta", item_id=item["id"],
                                       output_index=item["_index"], delta=fn["arguments"]))
        return out

    def done(self) -> list[bytes]:
        out: list[bytes] = []
        open_items = sorted([x for x in (self.text_item, *self.calls.values()) if x is not None],
                            key=lambda x: x["_index"])
        for item in open_items:
            index = item["_index"]
            item["status"] = "completed"
            if item["type"] == "message":
                part = {"type": "output_text", "text": self.text, "annotations": [], "logprobs": []}
                item["content"] = [part]
                out.append(self._event("response.output_text.done", item_id=item["id"], output_index=index,
                                       content_index=0, text=self.text, logprobs=[]))
                out.append(self._event("response.content_part.done", item_id=item["id"], output_index=index,
                                       content_index=0, part=part))
            else:
                out.append(self._event("response.function_call_arguments.done", item_id=item["id"],
                                       output_index=index, arguments=item["arguments"], name=item["name"]))
            self.output.append(_public(item))
            out.append(self._event("response.output_item.done", output_index=index, item=_public(item)))
        self.text_item, self.calls = None, {}
        usage = _usage(self.last.prompt_tokens, self.last.completion_tokens)
        snap = self._snapshot("completed", finish=self.last.finish_reason, usage=usage)
        kind = "response.incomplete" if snap["status"] == "incomplete" else "response.completed"
        out.append(self._event(kind, response=snap))
        return out

    def failed(self, err: GatewayError) -> list[bytes]:
        error = {"code": err.code or "server_error", "message": err.message}
        return [self._event("error", code=error["code"], message=err.message, param=err.param),
                self._event("response.failed", response=self._snapshot("failed", error=error, finish=None))]


def _public(item: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in item.items() if not k.startswith("_")}
