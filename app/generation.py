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

    def as_dict(self) -> dict[str, Any]:
        return {
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "stop": list(self.stop),
            "seed": self.seed,
            "presence_penalty": self.presence_penalty,
            "frequency_penalty": self.frequency_penalty,
        }


@dataclass(slots=True)
class GenerationRequest:
    """One generation job. Exactly one of ``messages`` (chat) or ``prompt`` (completion) is set."""

    request_id: str
    model: str
    messages: list[dict[str, str]] | None = None
    prompt: str | None = None
    sampling: SamplingOptions = field(default_factory=SamplingOptions)
    tenant: str = "default"

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


FinishReason = Literal["stop", "length", "error"] | None


@dataclass(slots=True)
class GenerationChunk:
    """A delta of generated text. The last chunk has ``finish_reason`` and final token counts."""

    text: str = ""
    finish_reason: FinishReason = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    model: str = ""
