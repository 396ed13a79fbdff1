"""OpenAI response bodies and stream chunks, built as plain dicts (fast to dump): chat and legacy completions,
usage, logprobs, tool calls. Split out of app/schemas.py (which re-exports them)."""

from __future__ import annotations

import time
from typing import Any


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def chat_logprobs(entries: list[dict[str, Any]] | None) -> dict[str, Any] | None:
    return None if entries is None else {"content": entries, "refusal": None}


def completion_logprobs(entries: list[dict[str, Any]] | None, offset: int = 0) -> dict[str, Any] | None:
    """OpenAI's legacy completions shape from chat-style entries (``text_offset`` from ``offset``)."""
    if entries is None:
        return None
    offsets, at = [], offset
    for e in entries:
        offsets.append(at)
        at += len(e["token"])
    return {"tokens": [e["token"] for e in entries], "token_logprobs": [e["logprob"] for e in entries],
            "top_logprobs": [{t["token"]: t["logprob"] for t in e.get("top_logprobs") or ()} for e in entries],
            "text_offset": offsets}


def message_tool_calls(tool_calls: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
    """Folded tool-call deltas as a message's ``tool_calls`` (no ``index``)."""
    if not tool_calls:
        return None
    return [{"id": c.get("id", ""), "type": c.get("type", "function"), "function": c["function"]} for c in tool_calls]


def chat_response(rid: str, model: str, text: str, finish: str | None, pt: int, ct: int, *,
                  tool_calls: list[dict[str, Any]] | None = None,
                  logprobs: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": text}
    calls = message_tool_calls(tool_calls)
    if calls:
        message["content"] = text or None
        message["tool_calls"] = calls
    return {
        "id": rid,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": chat_logprobs(logprobs)}],
        "usage": usage(pt, ct),
    }


def completion_response(rid: str, model: str, text: str, finish: str | None, pt: int, ct: int, *,
                        logprobs: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "id": rid,
        "object": "text_completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "text": text, "finish_reason": finish, "logprobs": completion_logprobs(logprobs)}],
        "usage": usage(pt, ct),
    }


def chat_chunk(rid: str, created: int, model: str, delta: dict[str, Any] | None, finish: str | None, *,
               logprobs: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish,
                                         "logprobs": chat_logprobs(logprobs)}]
    return {"id": rid, "object": "chat.completion.chunk", "created": created, "model": model, "choices": choices}


def completion_chunk(rid: str, created: int, model: str, text: str | None, finish: str | None, *,
                     logprobs: list[dict[str, Any]] | None = None, offset: int = 0) -> dict[str, Any]:
    choices = [] if text is None else [{"index": 0, "text": text, "finish_reason": finish,
                                        "logprobs": completion_logprobs(logprobs, offset)}]
    return {"id": rid, "object": "text_completion", "created": created, "model": model, "choices": choices}
