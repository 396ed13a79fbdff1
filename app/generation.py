"""Backend-neutral generation contract shared by model pools and external providers.

The ingress turns an OpenAI request into a :class:`GenerationRequest`; every backend
(vLLM pool, OpenAI/Anthropic fallback, cache replay) answers with an async stream of
:class:`GenerationChunk`. Plain dataclasses: cheap to pickle across Ray handles.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Role = Literal["system", "user", "assistant", "tool", "developer"]


@dataclass(slots=True)
class SamplingOptions:
    """Sampling parameters that change the answer (part of the exact cache key)."""

    max_tokens: int | None = None
    temperature: float = 1.0
    top_p: float = 1.0
    stop: list[str] = field(default_factory=list)
    seed: int | None = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    # OpenAI ``response_format`` when not plain text: {"type": "json_object"} or
    # {"type": "json_schema", "json_schema": {"name", "schema", "strict"}} (guided decoding on pools).
    structured: dict[str, Any] | None = None
    logprobs: int | None = None  # None: off; k >= 0: the sampled token's logprob plus the top k
    logit_bias: dict[str, float] | None = None  # token id (as a string, OpenAI's shape) -> bias -100..100
    ignore_eos: bool = False  # vLLM's: generate to max_tokens even past the end-of-sequence token
    min_tokens: int = 0  # vLLM's: no end-of-sequence (or stop string) before this many tokens

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "stop": list(self.stop),
            "seed": self.seed,
            "presence_penalty": self.presence_penalty,
            "frequency_penalty": self.frequency_penalty,
        }
        # Only when set, so the cache keys of plain requests are unchanged.
        for name in ("structured", "logprobs", "logit_bias"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        for name in ("ignore_eos", "min_tokens"):
            if getattr(self, name):
                out[name] = getattr(self, name)
        return out


@dataclass(slots=True)
class GenerationRequest:
    """One generation job. Exactly one of ``messages`` (chat) or ``prompt`` (completion) is set."""

    request_id: str
    model: str
    messages: list[dict[str, Any]] | None = None  # OpenAI shape; may hold tool_calls / tool_call_id
    prompt: str | None = None
    sampling: SamplingOptions = field(default_factory=SamplingOptions)
    tenant: str = "default"
    tools: list[dict[str, Any]] | None = None  # OpenAI shape: [{"type": "function", "function": {...}}]
    tool_choice: str | dict[str, Any] | None = None  # "none" | "auto" | "required" | {"type": "function", ...}
    parallel_tool_calls: bool | None = None

    @property
    def response_format(self) -> dict[str, Any] | None:
        return self.sampling.structured

    def needs(self) -> frozenset[str]:
        """Capabilities a backend must have to serve this request faithfully (see Step.capabilities)."""
        out = set()
        if self.tools and self.tool_choice != "none":
            out.add("tools")
        if self.sampling.structured is not None:
            out.add("response_format")
        if self.sampling.logprobs is not None:
            out.add("logprobs")
        if self.sampling.logit_bias:
            out.add("logit_bias")
        if self.sampling.ignore_eos:
            out.add("ignore_eos")  # vLLM's own: no provider's wire has it
        if self.sampling.min_tokens:
            out.add("min_tokens")
        return frozenset(out)

    @property
    def is_chat(self) -> bool:
        return self.messages is not None

    def last_user_text(self) -> str:
        """The text the router and the semantic cache look at."""
        if self.messages is None:
            return self.prompt or ""
        for message in reversed(self.messages):
            if message.get("role") == "user":
                return message.get("content") or ""
        return ""

    def system_prompt(self) -> str:
        if not self.messages:
            return ""
        return "\n".join(m.get("content") or "" for m in self.messages if m.get("role") in ("system", "developer"))


FinishReason = Literal["stop", "length", "error", "tool_calls", "content_filter"] | None


@dataclass(slots=True)
class GenerationChunk:
    """A delta of generated text. The last chunk has ``finish_reason`` and final token counts.

    ``tool_calls``: OpenAI stream deltas ``[{"index", "id"?, "type"?, "function": {"name"?, "arguments"}}]``;
    folded (``merge_tool_calls``) they are the complete calls. ``logprobs``: OpenAI chat ``content``
    entries ``[{"token", "logprob", "bytes", "top_logprobs": [...]}]``, one per generated token.
    """

    text: str = ""
    finish_reason: FinishReason = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    model: str = ""
    tool_calls: list[dict[str, Any]] | None = None
    logprobs: list[dict[str, Any]] | None = None


def merge_tool_calls(*parts: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
    """Fold tool-call deltas by ``index``: first id/type/name kept, ``arguments`` concatenated."""
    merged: dict[int, dict[str, Any]] = {}
    for deltas in parts:
        for delta in deltas or ():
            index = delta.get("index", 0)
            fn = delta.get("function") or {}
            call = merged.get(index)
            if call is None:
                call = merged[index] = {"index": index, "function": {"arguments": ""}}
            for key in ("id", "type"):
                if delta.get(key) and not call.get(key):
                    call[key] = delta[key]
            if fn.get("name") and not call["function"].get("name"):
                call["function"]["name"] = fn["name"]
            call["function"]["arguments"] += fn.get("arguments") or ""
    if not merged:
        return None
    out = []
    for index in sorted(merged):
        call = merged[index]
        fn = call["function"]
        ordered = {"index": index}
        if "id" in call:
            ordered["id"] = call["id"]
        if "type" in call:
            ordered["type"] = call["type"]
        ordered["function"] = {**({"name": fn["name"]} if "name" in fn else {}), "arguments": fn["arguments"]}
        out.append(ordered)
    return out


def merge_chunks(chunks: list[GenerationChunk]) -> GenerationChunk:
    """One chunk: the texts, tool-call deltas and logprobs of ``chunks`` joined, the state of the last one."""
    last = chunks[-1]
    if len(chunks) == 1:
        return last
    logprobs = [e for c in chunks for e in (c.logprobs or ())]
    return GenerationChunk(
        "".join(c.text for c in chunks), last.finish_reason, last.prompt_tokens, last.completion_tokens,
        last.model, merge_tool_calls(*(c.tool_calls for c in chunks)),
        logprobs if any(c.logprobs is not None for c in chunks) else None,
    )
