"""Cache keys. The scope (tenant, model, system prompt, prompt version, answer-changing sampling
params) bounds what an entry may ever be served to; the exact key adds the full conversation."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

_SPACE = re.compile(r"\s+")
# Sampling params that change the answer. max_tokens is left out of the scope on purpose: a cached
# answer is only served when it fits the requested max_tokens (checked on lookup).
SCOPE_SAMPLING = ("temperature", "top_p", "stop", "seed", "presence_penalty", "frequency_penalty", "structured",
                  "logit_bias")  # a json_schema / logit_bias answer is never served to a plain request


def normalize(text: str) -> str:
    return _SPACE.sub(" ", text).strip()


@dataclass
class CacheQuery:
    tenant: str
    model: str  # the model name the client asked for ("auto", "small", ...)
    system_prompt: str = ""
    messages: list[dict[str, Any]] = field(default_factory=list)
    prompt: str | None = None
    sampling: dict[str, Any] = field(default_factory=dict)
    prompt_version: str | None = None
    embedding: np.ndarray | None = None
    strictness: str | None = None  # "strict" | "balanced" (tenant option cache.strictness); None: the config's

    def last_user_text(self) -> str:
        if self.prompt is not None:
            return self.prompt
        for m in reversed(self.messages):
            if m.get("role") == "user":
                return m.get("content") or ""
        return ""

    def max_tokens(self) -> int | None:
        return self.sampling.get("max_tokens")


def _digest(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:32]


def scope_key(q: CacheQuery) -> str:
    sampling = {k: q.sampling.get(k) for k in SCOPE_SAMPLING}
    return _digest(["scope", q.tenant, q.model, normalize(q.system_prompt), q.prompt_version, sampling])


def exact_key(q: CacheQuery) -> str:
    """Scope + the whole conversation (earlier turns included), whitespace-normalised."""
    convo = [(m.get("role"), normalize(m.get("content") or "")) for m in q.messages if m.get("role") != "system"]
    return _digest(["exact", scope_key(q), convo, normalize(q.prompt) if q.prompt is not None else None])


def context_key(q: CacheQuery) -> str:
    """Scope + the conversation before the last user turn: semantic matches only within the same context."""
    convo = [(m.get("role"), normalize(m.get("content") or "")) for m in q.messages if m.get("role") != "system"]
    if convo and convo[-1][0] == "user":
        convo = convo[:-1]
    return _digest(["ctx", scope_key(q), convo])
