"""OpenAI tools, tool_choice and response_format: wire models and their checks (400 naming the field).

A tool's ``parameters`` and a ``json_schema`` must be JSON Schema (draft 2020-12); a response schema
must also be enforceable by the pools' guided decoding (``app.structured.schema_support``), and so
must the parameters of a tool that guided decoding forces (``tool_choice`` required or named).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool

from app.errors import InvalidRequestError
from app.structured.schema_support import check_schema

NAME_PATTERN = r"^[a-zA-Z0-9_-]{1,64}$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FunctionDef(_Strict):
    name: str = Field(pattern=NAME_PATTERN)
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: StrictBool | None = None


class Tool(_Strict):
    type: Literal["function"]
    function: FunctionDef


class NamedFunction(_Strict):
    name: str = Field(pattern=NAME_PATTERN)


class NamedToolChoice(_Strict):
    type: Literal["function"]
    function: NamedFunction


ToolChoice = Literal["none", "auto", "required"] | NamedToolChoice


class JsonSchemaFormat(_Strict):
    name: str = Field(pattern=NAME_PATTERN)
    description: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: StrictBool | None = None

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class TextFormat(_Strict):
    type: Literal["text"]


class JsonObjectFormat(_Strict):
    type: Literal["json_object"]


class JsonSchemaResponseFormat(_Strict):
    type: Literal["json_schema"]
    json_schema: JsonSchemaFormat


ResponseFormat = TextFormat | JsonObjectFormat | JsonSchemaResponseFormat


def response_format_dict(fmt: ResponseFormat | None) -> dict[str, Any] | None:
    """The checked format for SamplingOptions.structured (None for text / absent)."""
    if fmt is None or isinstance(fmt, TextFormat):
        return None
    if isinstance(fmt, JsonObjectFormat):
        return {"type": "json_object"}
    js = fmt.json_schema
    schema = js.schema_ if js.schema_ is not None else {}
    check_schema(schema, "response_format.json_schema.schema")
    return {"type": "json_schema", "json_schema": {"name": js.name, "schema": schema, "strict": js.strict}}


def check_tools(tools: list[Tool] | None, tool_choice: ToolChoice | None,
                parallel_tool_calls: bool | None) -> tuple[list[dict[str, Any]] | None, str | dict[str, Any] | None]:
    """Validated tools and tool_choice as plain OpenAI dicts; 400 for anything inconsistent."""
    if not tools:
        if tool_choice not in (None, "none"):
            raise InvalidRequestError("'tool_choice' is only allowed when 'tools' are specified.",
                                      param="tool_choice")
        if tools is not None:
            raise InvalidRequestError("'tools' must not be an empty list.", param="tools")
        return None, None
    names: set[str] = set()
    for i, tool in enumerate(tools):
        if tool.function.name in names:
            raise InvalidRequestError(f"Duplicate tool name '{tool.function.name}'.", param=f"tools.{i}.function.name")
        names.add(tool.function.name)
        if tool.function.parameters is not None:
            check_schema(tool.function.parameters, f"tools.{i}.function.parameters", enforceable=False)
    choice: str | dict[str, Any] = "auto" if tool_choice is None else (
        tool_choice if isinstance(tool_choice, str) else tool_choice.model_dump())
    forced: list[int] = []
    if isinstance(choice, dict):
        name = choice["function"]["name"]
        if name not in names:
            raise InvalidRequestError(f"'tool_choice' names the function '{name}', which is not in 'tools' "
                                      f"({', '.join(sorted(names))}).", param="tool_choice")
        forced = [i for i, t in enumerate(tools) if t.function.name == name]
    elif choice == "required":
        forced = list(range(len(tools)))
    for i in forced:  # guided decoding will enforce these parameters: they must be decodable
        params = tools[i].function.parameters
        if params is not None:
            check_schema(params, f"tools.{i}.function.parameters")
    return [t.model_dump(exclude_none=True) for t in tools], choice
