"""OpenAI-shaped history, tools and response_format in each provider's wire format (pure functions)."""

from __future__ import annotations

import json
from typing import Any

from app.generation import GenerationRequest
from app.structured.tool_schema import forced_name
from app.structured.validate import schema_of

_JSON_TOOL = "json_answer"


def json_tool_name() -> str:
    return _JSON_TOOL


def openai_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """History as OpenAI takes it: assistant tool-call turns with ``content: null`` when empty."""
    out = []
    for m in messages:
        m = dict(m)
        if m.get("tool_calls") and not m.get("content"):
            m["content"] = None
        out.append(m)
    return out


def _input(arguments: str) -> Any:
    try:
        value = json.loads(arguments)
    except (json.JSONDecodeError, TypeError):
        return {}
    return value if isinstance(value, dict) else {}


def anthropic_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """user/assistant turns; tool calls as ``tool_use`` blocks, tool results as ``tool_result`` blocks in a
    user turn (consecutive results share one turn); system/developer turns go to ``system``."""
    out: list[dict[str, Any]] = []
    for m in messages:
        role = m.get("role")
        if role == "tool":
            block = {"type": "tool_result", "tool_use_id": m.get("tool_call_id", ""), "content": m.get("content") or ""}
            if out and out[-1]["role"] == "user" and isinstance(out[-1]["content"], list) and \
                    all(b.get("type") == "tool_result" for b in out[-1]["content"]):
                out[-1]["content"].append(block)
            else:
                out.append({"role": "user", "content": [block]})
        elif role == "assistant" and m.get("tool_calls"):
            blocks: list[dict[str, Any]] = [{"type": "text", "text": m["content"]}] if m.get("content") else []
            blocks += [{"type": "tool_use", "id": c["id"], "name": c["function"]["name"],
                        "input": _input(c["function"]["arguments"])} for c in m["tool_calls"]]
            out.append({"role": "assistant", "content": blocks})
        elif role in ("user", "assistant"):
            out.append({"role": role, "content": m.get("content") or ""})
    return out


def anthropic_tools(req: GenerationRequest) -> tuple[list[dict[str, Any]] | None, dict[str, Any] | None]:
    """Anthropic ``tools`` and ``tool_choice``; a response_format becomes a forced ``json_answer`` tool."""
    tools = [{"name": t["function"]["name"], "description": t["function"].get("description", ""),
              "input_schema": t["function"].get("parameters") or {"type": "object", "properties": {}}}
             for t in req.tools or ()]
    schema = schema_of(req.response_format)
    if schema is not None:  # Anthropic tool inputs are objects: a non-object root schema is answered 400 upstream
        tools.append({"name": _JSON_TOOL, "description": "Answer with JSON matching this schema.",
                      "input_schema": schema})
        return tools, {"type": "tool", "name": _JSON_TOOL}
    if not tools:
        return None, None
    choice: dict[str, Any]
    name = forced_name(req.tool_choice)
    if name:
        choice = {"type": "tool", "name": name}
    elif req.tool_choice == "required":
        choice = {"type": "any"}
    elif req.tool_choice == "none":
        choice = {"type": "none"}
    else:
        choice = {"type": "auto"}
    if req.parallel_tool_calls is False and choice["type"] != "none":
        choice["disable_parallel_tool_use"] = True
    return tools, choice
