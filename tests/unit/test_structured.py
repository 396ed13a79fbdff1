"""app.structured: the refused-keyword list re-checked against the installed xgrammar, final-text
validation, tool-choice schemas, and the structured_output stage (re-ask once, then 502; streams end
with an error event)."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

import pytest

from app.errors import UpstreamError
from app.generation import GenerationChunk, GenerationRequest, SamplingOptions
from app.structured.schema_support import check_schema, unsupported_keywords
from app.structured.stage import StructuredOutput
from app.structured.tool_schema import calls_from_guided, guided_schema, tool_mode
from app.structured.validate import reask_messages, validate_text

# (refused keyword, schema, an instance that violates it) — xgrammar must accept the violation or reject a
# valid instance; otherwise the keyword is enforceable and should not be on the refused list.
PROBES = [
    ("uniqueItems", {"type": "array", "items": {"type": "integer"}, "uniqueItems": True}, "[1,1]", "[1,2]"),
    ("maxLength", {"type": "string", "pattern": "^a+$", "maxLength": 2}, '"aaaa"', '"aa"'),
    ("minLength", {"type": "string", "pattern": "^a+$", "minLength": 3}, '"a"', '"aaa"'),
    ("not", {"not": {"type": "string"}}, '"a"', "1"),
    ("allOf", {"allOf": [{"type": "string"}, {"enum": ["yes"]}]}, '"no"', '"yes"'),
    ("multipleOf", {"type": "number", "multipleOf": 0.5}, "0.3", "1.5"),
    ("format", {"type": "string", "format": "regex"}, '"["', '"a"'),
    ("contains", {"type": "array", "contains": {"const": 5}}, "[1]", "[5]"),
    ("if", {"type": "object", "if": {"properties": {"a": {"const": 1}}}, "then": {"required": ["b"]}},
     '{"a":1}', '{"a":1,"b":2}'),
    ("dependentRequired", {"type": "object", "dependentRequired": {"a": ["b"]}}, '{"a":1}', '{"a":1,"b":1}'),
    ("propertyNames", {"type": "object", "propertyNames": {"pattern": "^x"}}, '{"a":1}', '{"xa":1}'),
    ("maxProperties", {"type": "object", "maxProperties": 1}, '{"a":1,"b":2}', '{"a":1}'),
]
# Keywords xgrammar does enforce: accepted (guided decoding honours them).
ENFORCED = [
    ({"type": "array", "items": {"type": "integer"}, "minItems": 2}, "[1]", "[1,2]"),
    ({"type": "array", "items": {"type": "integer"}, "maxItems": 1}, "[1,2]", "[1]"),
    ({"type": "string", "maxLength": 2}, '"abc"', '"ab"'),
    ({"type": "string", "pattern": "^a+$"}, '"b"', '"aa"'),
    ({"type": "integer", "minimum": 5, "maximum": 9}, "3", "7"),
    ({"type": "string", "format": "email"}, '"x"', '"a@b.co"'),
    ({"enum": ["a", "b"]}, '"c"', '"a"'),
]


def _accepts(schema: dict, text: str) -> bool:
    import xgrammar as xgr
    from xgrammar.testing import _is_grammar_accept_string

    return _is_grammar_accept_string(xgr.Grammar.from_json_schema(json.dumps(schema), any_whitespace=True), text)


@pytest.mark.parametrize(("keyword", "schema", "bad", "good"), PROBES)
def test_refused_keywords_really_are_not_enforced_by_xgrammar(keyword, schema, bad, good) -> None:
    assert keyword in {k for k, _, _ in unsupported_keywords(schema)}
    try:
        broken = _accepts(schema, bad) or not _accepts(schema, good)
    except RuntimeError:  # xgrammar cannot even compile it
        broken = True
    assert broken, f"xgrammar now enforces {keyword}: take it off the refused list"


@pytest.mark.parametrize(("schema", "bad", "good"), ENFORCED)
def test_enforced_keywords_are_accepted(schema, bad, good) -> None:
    assert unsupported_keywords(schema) == []
    check_schema(schema, "s")
    assert not _accepts(schema, bad) and _accepts(schema, good)


def test_validate_text_verdicts() -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer"}, "e": {"type": "string", "format": "email"}},
              "required": ["n"]}
    assert validate_text('{"n": 1}', schema).verdict == "valid"
    bad = validate_text('{"n": "x", "e": "nope"}', schema)
    assert bad.verdict == "invalid" and any("/n" in e for e in bad.errors) and any("/e" in e for e in bad.errors)
    assert validate_text('{"n": 1', schema, "length").verdict == "truncated"
    assert validate_text('{"n": 1', schema, "stop").verdict == "invalid"
    msgs = reask_messages([{"role": "user", "content": "q"}], '{"n": "x"}', bad.errors)
    assert msgs[1] == {"role": "assistant", "content": '{"n": "x"}'} and bad.errors[0] in msgs[2]["content"]


def test_tool_choice_schemas_and_calls() -> None:
    tools = [{"type": "function", "function": {"name": "a", "parameters": {"type": "object", "properties": {
        "x": {"type": "integer"}}}}}, {"type": "function", "function": {"name": "b"}}]
    assert tool_mode(tools, None) == "auto" and tool_mode(tools, "none") is None and tool_mode(None, "auto") is None
    named = {"type": "function", "function": {"name": "a"}}
    assert guided_schema(tools, named) == tools[0]["function"]["parameters"]
    req = guided_schema(tools, "required", parallel_tool_calls=False)
    assert req["maxItems"] == 1 and [b["properties"]["name"]["enum"] for b in req["items"]["anyOf"]] == [["a"], ["b"]]
    assert guided_schema(tools, "auto") is None
    [call] = calls_from_guided('{"x": 3}', named)
    assert call["function"] == {"name": "a", "arguments": '{"x":3}'} and call["id"].startswith("call_")
    calls = calls_from_guided('[{"name": "a", "parameters": {"x": 1}}, {"name": "b", "parameters": {}}]', "required")
    assert [c["index"] for c in calls] == [0, 1] and calls[1]["function"]["arguments"] == "{}"
    assert calls_from_guided('{"x": 3', named) is None and calls_from_guided('{"a": 1}', "required") is None


# ---- the output stage, with the pipeline's shapes (duck-typed) -----------------------------------------
@dataclass
class Ans:
    first: GenerationChunk
    rest: Any
    path: str = "pool:small"
    source: str = "generated"
    cancel: Any = None


@dataclass
class Ctx:
    gen: GenerationRequest
    stream: bool = False
    answer: Any = None
    response_headers: dict = field(default_factory=dict)
    extras: dict = field(default_factory=dict)


async def _chunks(*texts: str, finish: str = "stop"):
    for i, t in enumerate(texts):
        yield GenerationChunk(t, finish if i == len(texts) - 1 else None, 5, i + 1, "m")


def _answer(*texts: str, finish: str = "stop") -> Ans:
    rest = _chunks(*texts, finish=finish)
    return Ans(GenerationChunk("", None, 5, 0, "m"), rest)


SCHEMA = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}


def _ctx(stream: bool = False) -> Ctx:
    fmt = {"type": "json_schema", "json_schema": {"name": "n", "schema": SCHEMA, "strict": True}}
    gen = GenerationRequest("r", "m", messages=[{"role": "user", "content": "q"}],
                            sampling=SamplingOptions(structured=fmt))
    return Ctx(gen, stream)


def _run_unary(ctx: Ctx, answer: Ans, regenerate) -> GenerationChunk:
    async def go():
        wrapped = StructuredOutput(regenerate).wrap(ctx, answer)
        ctx.answer = wrapped
        return [c async for c in wrapped.rest][-1]
    return asyncio.run(go())


def test_stage_valid_answer_passes_with_header() -> None:
    ctx = _ctx()
    out = _run_unary(ctx, _answer('{"n"', ': 1}'), regenerate=None)
    assert out.text == '{"n": 1}' and ctx.response_headers["x-llmgw-schema"] == "valid"


def test_stage_reasks_once_with_the_errors_then_answers() -> None:
    ctx, seen = _ctx(), []

    async def regenerate(c: Ctx) -> None:
        seen.append(c.gen.messages)
        c.answer = _answer('{"n": 2}')

    out = _run_unary(ctx, _answer('{"n": "one"}'), regenerate)
    assert out.text == '{"n": 2}' and ctx.response_headers["x-llmgw-schema"] == "valid"
    assert len(seen) == 1 and "does not match" in seen[0][-1]["content"] and seen[0][-2]["content"] == '{"n": "one"}'
    assert out.completion_tokens == 2 and out.prompt_tokens == 10  # both attempts are counted


def test_stage_fails_502_after_the_reask() -> None:
    async def regenerate(c: Ctx) -> None:
        c.answer = _answer('{"m": 1}')

    with pytest.raises(UpstreamError) as info:
        _run_unary(_ctx(), _answer("nope"), regenerate)
    assert info.value.status_code == 502 and info.value.code == "json_schema_validation_failed"


def test_stage_truncated_is_a_200_with_verdict() -> None:
    ctx = _ctx()
    out = _run_unary(ctx, _answer('{"n": 12', finish="length"), regenerate=None)
    assert out.finish_reason == "length" and ctx.response_headers["x-llmgw-schema"] == "truncated"


def test_stage_stream_ends_with_the_error_after_the_text() -> None:
    ctx = _ctx(stream=True)

    async def go():
        wrapped = StructuredOutput(None).wrap(ctx, _answer('{"n"', ': "x"}'))
        got = []
        with pytest.raises(UpstreamError) as info:
            async for c in wrapped.rest:
                got.append(c.text)
        return got, info.value

    got, err = asyncio.run(go())
    assert "".join(got) == '{"n": "x"}' and err.code == "json_schema_validation_failed"


def test_stage_leaves_plain_requests_alone() -> None:
    ctx = Ctx(GenerationRequest("r", "m", messages=[{"role": "user", "content": "q"}]))
    answer = _answer("hi")
    assert StructuredOutput(None).wrap(ctx, answer) is answer


def test_stage_regenerates_an_invalid_cached_answer_without_spending_the_reask() -> None:
    ctx, calls = _ctx(), []

    async def regenerate(c: Ctx) -> None:
        calls.append(list(c.gen.messages))
        c.answer = _answer('{"n": 4}')

    cached = _answer("plain text from the cache")
    cached.source = "cache"
    out = _run_unary(ctx, cached, regenerate)
    assert out.text == '{"n": 4}' and ctx.response_headers["x-llmgw-schema"] == "valid"
    assert calls == [[{"role": "user", "content": "q"}]]  # the original request, not a re-ask
