"""The pool side of tools without starting vLLM: the chat prompt with tools and tool history, and
engine text turned into OpenAI tool_call deltas (guided named/required; auto via vLLM's hermes parser)."""

from __future__ import annotations

import json

import pytest

from app.engines.chat_prompt import hermes_messages, native_messages, render_chat, template_knows_tools
from app.engines.tool_output import ToolOutput, make_parser
from app.generation import merge_tool_calls

WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
HISTORY = [{"role": "user", "content": "weather?"},
           {"role": "assistant", "content": "", "tool_calls": [{"id": "call_1", "type": "function", "function": {
               "name": "get_weather", "arguments": "{\"city\": \"Oslo\"}"}}]},
           {"role": "tool", "tool_call_id": "call_1", "content": "12 C"}]


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    from app.cli import ensure_tiny_models

    ensure_tiny_models()
    return AutoTokenizer.from_pretrained(".cache/models/tiny-small")


def test_template_without_tool_support_gets_the_hermes_convention(tokenizer) -> None:
    assert not template_knows_tools(tokenizer.chat_template)
    text = render_chat(tokenizer, HISTORY, [WEATHER])
    assert text.count("<|system|>") == 1 and '"name": "get_weather"' in text
    assert '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call>' in text
    assert "<|tool|>\n<tool_response>\n12 C\n</tool_response>" in text and text.endswith("<|assistant|>\n")
    plain = render_chat(tokenizer, [{"role": "user", "content": "hi"}], None)
    assert plain == tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], add_generation_prompt=True,
                                                  tokenize=False)


def test_tool_aware_templates_get_native_messages() -> None:
    native = native_messages(HISTORY)
    assert native[1]["tool_calls"][0]["function"]["arguments"] == {"city": "Oslo"} and native[1]["content"] == ""
    assert hermes_messages(HISTORY, None)[0]["role"] == "user"  # no tools listed: no system turn added
    qwen_like = "{% for m in messages %}{{ m.tool_calls }}{% endfor %}{% if tools %}{{ tools }}{% endif %}"
    assert template_knows_tools(qwen_like)


def test_named_choice_streams_argument_deltas() -> None:
    out = ToolOutput("named", {"type": "function", "function": {"name": "get_weather"}})
    deltas = [out.feed(piece, [0])[1] for piece in ('{"ci', 'ty": ', '"Oslo"}')]
    assert deltas[0][0]["id"].startswith("call_") and deltas[0][0]["function"]["name"] == "get_weather"
    assert "id" not in deltas[1][0] and out.finish() == ("", None) and out.finish_reason("stop") == "stop"
    [call] = merge_tool_calls(*deltas)
    assert json.loads(call["function"]["arguments"]) == {"city": "Oslo"}


def test_required_choice_parses_at_the_end_or_returns_text() -> None:
    out = ToolOutput("required", "required")
    assert out.feed('[{"name": "get_weather", ', [0]) == ("", None)
    out.feed('"parameters": {"city": "x"}}]', [0])
    text, calls = out.finish()
    assert text == "" and calls[0]["function"] == {"name": "get_weather", "arguments": '{"city":"x"}'}
    assert out.finish_reason("stop") == "tool_calls"
    cut = ToolOutput("required", "required")
    cut.feed('[{"name": "get_we', [0])
    assert cut.finish() == ('[{"name": "get_we', None) and cut.finish_reason("length") == "length"


def test_auto_uses_the_vllm_hermes_parser(tokenizer) -> None:
    parser, request = make_parser("hermes", tokenizer, "tiny-small", [WEATHER])
    out = ToolOutput("auto", "auto", parser, request)
    text = 'Let me check. <tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call>'
    content, deltas = "", []
    for i in range(0, len(text), 7):
        piece = text[i:i + 7]
        c, d = out.feed(piece, tokenizer.encode(piece, add_special_tokens=False))
        content += c
        deltas.append(d)
    c, d = out.finish()
    content += c
    deltas.append(d)
    [call] = merge_tool_calls(*deltas)
    assert content.strip() == "Let me check." and call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"]) == {"city": "Oslo"} and out.finish_reason("stop") == "tool_calls"


def test_auto_plain_text_stays_content(tokenizer) -> None:
    parser, request = make_parser("hermes", tokenizer, "tiny-small", [WEATHER])
    out = ToolOutput("auto", "auto", parser, request)
    content = "".join(out.feed(p, [0])[0] for p in ("Hello ", "there <to", "ol"))
    rest, calls = out.finish()
    assert content + rest == "Hello there <tool" and calls is None and out.finish_reason("stop") == "stop"


def test_whitespace_guard_counts_the_trailing_run_across_deltas() -> None:
    from app.engines.vllm_engine import MAX_WHITESPACE_RUN, _whitespace_run

    run = 0
    for delta in ('{"a": "x', "  ", " \n", "\t "):
        run = _whitespace_run(run, delta)
    assert run == 6
    assert _whitespace_run(run, " y ") == 1  # text in between resets the run
    run = 0
    for _ in range(MAX_WHITESPACE_RUN):
        run = _whitespace_run(run, " ")
    assert run >= MAX_WHITESPACE_RUN
