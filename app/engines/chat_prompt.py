"""The chat prompt a pool's model reads, with tools and tool-call history.

A chat template that knows tools (Hermes, Qwen, Llama 3.1...) gets ``tools=`` and the history as
is (tool-call ``arguments`` parsed to objects, as vLLM hands them to templates). A template that
does not mention them (the tiny local models) gets the Hermes convention written into the
messages: the tool signatures in a system turn, past calls as ``<tool_call>{...}</tool_call>`` text
and tool results as ``<tool_response>`` text, so the pool's ``hermes`` parser reads the answer.

A template that refuses the messages (``raise_exception`` on roles that do not alternate, a system
turn it does not support, a field it cannot read) is the request's fault: :class:`ChatTemplateError`,
a 400 the ingress raises before any pool is tried and the pool raises inside the engine's error
mapping (never a pool failure on a breaker, issue 14 #5). A template with a syntax error, or none at
all, is the deployment's fault and stays a server error.
"""

from __future__ import annotations

import json
from typing import Any

from jinja2 import TemplateError, TemplateSyntaxError

from app.errors import ChatTemplateError

MAX_REASON_CHARS = 300

HERMES_SYSTEM = (  # kept short: tiny test models have 512-token contexts
    "You may call functions. Signatures:\n<tools>\n{tools}\n</tools>\n"
    "To call one, answer <tool_call>{{\"name\": ..., \"arguments\": {{...}}}}</tool_call>"
)


def _arguments(raw: str) -> Any:
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, TypeError):
        return raw


def template_knows_tools(template: str | None) -> bool:
    return bool(template) and "tools" in template and "tool_calls" in template


def native_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """History for a tool-aware template: arguments as objects, content never None."""
    out = []
    for m in messages:
        m = dict(m)
        m["content"] = m.get("content") or ""
        if m.get("tool_calls"):
            m["tool_calls"] = [{**c, "function": {**c["function"], "arguments": _arguments(c["function"]["arguments"])}}
                               for c in m["tool_calls"]]
        out.append(m)
    return out


def hermes_messages(messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """History for a template without tool support: everything as plain text turns (content a string)."""
    out: list[dict[str, Any]] = []
    if tools:
        listed = "\n".join(json.dumps(t, ensure_ascii=False, separators=(",", ":")) for t in tools)
        out.append({"role": "system", "content": HERMES_SYSTEM.format(tools=listed)})
    for m in messages:
        content = m.get("content") or ""
        if m.get("tool_calls"):
            calls = "".join("<tool_call>\n" + json.dumps({"name": c["function"]["name"],
                                                          "arguments": _arguments(c["function"]["arguments"])},
                                                         ensure_ascii=False) + "\n</tool_call>"
                            for c in m["tool_calls"])
            content = (content + "\n" if content else "") + calls
        if m.get("role") == "tool":
            content = f"<tool_response>\n{content}\n</tool_response>"
        out.append({"role": m["role"], "content": content})
    return out


def apply_template(tokenizer: Any, messages: list[dict[str, Any]], **kwargs: Any) -> str:
    """``tokenizer.apply_chat_template`` (generation prompt appended, text); a refusal is a ChatTemplateError."""
    if not getattr(tokenizer, "chat_template", None):  # no template: a deployment fault, let HF say so
        return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False, **kwargs)
    try:
        return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False, **kwargs)
    except TemplateSyntaxError:
        raise  # the pool's template itself is broken: not the request's fault
    except (TemplateError, TypeError, ValueError, LookupError, AttributeError) as exc:
        reason = " ".join(str(exc).split())[:MAX_REASON_CHARS] or type(exc).__name__
        raise ChatTemplateError(f"The model's chat template cannot render these messages: {reason}",
                                param="messages") from None


def render_chat(tokenizer: Any, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None) -> str:
    """The prompt text (generation prompt appended) for ``messages`` and ``tools``; ChatTemplateError (400)
    when the template refuses them."""
    template = getattr(tokenizer, "chat_template", None)
    has_tool_history = any(m.get("tool_calls") or m.get("role") == "tool" for m in messages)
    if (tools or has_tool_history) and template_knows_tools(template if isinstance(template, str) else None):
        return apply_template(tokenizer, native_messages(messages), tools=tools)
    if tools or has_tool_history:
        messages = hermes_messages(messages, tools)
    else:
        messages = [{"role": m["role"], "content": m.get("content") or ""} for m in messages]
    return apply_template(tokenizer, messages)
