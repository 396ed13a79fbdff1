"""Tools under guided decoding: the JSON Schema a forced ``tool_choice`` decodes against, and the
OpenAI ``tool_calls`` read back from that output (vLLM's serving layer does the same)."""

from __future__ import annotations

import json
import uuid
from typing import Any


def call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


def forced_name(tool_choice: Any) -> str | None:
    """The function a named ``tool_choice`` forces, else None."""
    if isinstance(tool_choice, dict):
        return (tool_choice.get("function") or {}).get("name")
    return None


def tool_mode(tools: list[dict[str, Any]] | None, tool_choice: Any) -> str | None:
    """None (no tool calling), "auto" (the model may call: parsed), "required" or "named" (guided)."""
    if not tools or tool_choice == "none":
        return None
    if forced_name(tool_choice):
        return "named"
    if tool_choice == "required":
        return "required"
    return "auto"


def _parameters(tool: dict[str, Any]) -> dict[str, Any]:
    return (tool.get("function") or {}).get("parameters") or {"type": "object", "properties": {}}


def find_tool(tools: list[dict[str, Any]], name: str) -> dict[str, Any] | None:
    return next((t for t in tools if (t.get("function") or {}).get("name") == name), None)


def guided_schema(tools: list[dict[str, Any]] | None, tool_choice: Any,
                  parallel_tool_calls: bool | None = None) -> dict[str, Any] | None:
    """Named: the function's parameters. Required: ``[{"name", "parameters"}, ...]`` (one item if not parallel)."""
    mode = tool_mode(tools, tool_choice)
    if mode == "named":
        tool = find_tool(tools or [], forced_name(tool_choice) or "")
        return _parameters(tool) if tool is not None else None
    if mode != "required":
        return None
    branches = [{"type": "object", "properties": {"name": {"type": "string", "enum": [t["function"]["name"]]},
                                                  "parameters": _parameters(t)},
                 "required": ["name", "parameters"], "additionalProperties": False} for t in tools or []]
    schema: dict[str, Any] = {"type": "array", "minItems": 1, "items": {"anyOf": branches}}
    if parallel_tool_calls is False:
        schema["maxItems"] = 1
    return schema


def calls_from_guided(text: str, tool_choice: Any) -> list[dict[str, Any]] | None:
    """Complete OpenAI tool calls from guided output, or None if the text is not the expected JSON."""
    try:
        value = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        return None
    name = forced_name(tool_choice)
    if name is not None:
        items = [{"name": name, "parameters": value}]
    elif isinstance(value, list):
        items = value
    else:
        return None
    calls = []
    for i, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            return None
        arguments = json.dumps(item.get("parameters", {}), ensure_ascii=False, separators=(",", ":"))
        calls.append({"index": i, "id": call_id(), "type": "function",
                      "function": {"name": item["name"], "arguments": arguments}})
    return calls
