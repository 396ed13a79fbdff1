"""Input guardrails: message/token caps, per-tenant denylists, injection patterns and classifier.

``InputGuard(config, detector).check(messages, prompt_tokens)`` returns the decisions and raises
``ContentPolicyError`` (400 ``content_policy_violation``, reason code in the message) on a block.
``check_async`` runs the classifier in a thread with a timeout; a classifier that raises or times out
fails closed (``GuardrailUnavailableError``, 503 ``guardrail_unavailable``) unless ``fail_mode: open``.
Cheap rules run first: a block by a cap or the denylist never waits for the classifier.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Sequence
from typing import Any

from app.errors import ContentPolicyError, GuardrailUnavailableError
from app.guardrails.decisions import GuardDecision
from app.guardrails.detector import InjectionScorer
from app.guardrails.patterns import pattern_hits
from app.guardrails.settings import GuardrailsConfig, InputGuardConfig

log = logging.getLogger(__name__)
_ACTIONS = {"block": "block", "flag": "flag", "allow": "allow"}


def message_text(message: dict[str, Any]) -> str:
    """The text of an OpenAI chat message (string content or a list of text parts)."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(str(p.get("text", "")) for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


class InputGuard:
    """Built once per (tenant) config; ``detector`` may be None when injection detection is off."""

    def __init__(self, config: GuardrailsConfig | InputGuardConfig, detector: InjectionScorer | None = None) -> None:
        self.config = config.input if isinstance(config, GuardrailsConfig) else config
        self.enabled = self.config.enabled and (not isinstance(config, GuardrailsConfig) or config.enabled)
        inj = self.config.injection
        self.detector = detector
        self.threshold = inj.threshold if inj.threshold is not None else (detector.threshold if detector else 1.0)
        self._denylist = [(rule.name, rule.action, re.compile(
            r"(?<!\w)(?:" + "|".join(re.escape(t.strip()) for t in rule.terms if t.strip()) + r")(?!\w)", re.I))
            for rule in self.config.denylist]

    @property
    def uses_classifier(self) -> bool:
        inj = self.config.injection
        return self.enabled and inj.enabled and inj.action != "allow" and self.detector is not None

    def scanned_texts(self, messages: Sequence[dict[str, Any]]) -> list[str]:
        roles = set(self.config.injection.roles)
        texts = [message_text(m) for m in messages if m.get("role") in roles]
        return [t for t in texts[-self.config.injection.scan_last_messages:] if t.strip()]

    def check_rules(self, messages: Sequence[dict[str, Any]], prompt_tokens: int) -> list[GuardDecision]:
        """Caps, denylist and patterns (no model): cheap, synchronous. Raises on a block."""
        if not self.enabled:
            return []
        cfg, decisions = self.config, []
        if cfg.max_messages is not None and len(messages) > cfg.max_messages:
            decisions.append(GuardDecision("input", "max_messages", "block", "too_many_messages",
                                           score=float(len(messages))))
        if cfg.max_prompt_tokens is not None and prompt_tokens > cfg.max_prompt_tokens:
            decisions.append(GuardDecision("input", "max_prompt_tokens", "block", "prompt_too_long",
                                           score=float(prompt_tokens)))
        _raise_on_block(decisions)
        texts = [message_text(m) for m in messages if m.get("role") != "system"]
        for name, action, pattern in self._denylist:
            if any(pattern.search(t) for t in texts):
                decisions.append(GuardDecision("input", "denylist", _ACTIONS[action], f"banned_topic:{name}"))
        inj = cfg.injection
        if inj.enabled and inj.patterns and inj.action != "allow":
            hits = sorted({h for t in self.scanned_texts(messages) for h in pattern_hits(t)})
            if hits:
                decisions.append(GuardDecision("input", "injection.pattern", inj.action,
                                               f"prompt_injection:{hits[0]}", count=len(hits)))
        _raise_on_block(decisions)
        return decisions

    def classify(self, messages: Sequence[dict[str, Any]]) -> GuardDecision | None:
        """The classifier's decision (None when off or below threshold). Errors propagate."""
        if not self.uses_classifier:
            return None
        assert self.detector is not None
        texts = self.scanned_texts(messages)
        screen = self.config.injection.prescreen and self.threshold >= self.detector.threshold
        score = max((self.detector.score(t, prescreen=screen) for t in texts), default=0.0)
        if score < self.threshold:
            return None
        return GuardDecision("input", "injection.classifier", self.config.injection.action, "prompt_injection",
                             score=round(score, 4))

    def check(self, messages: Sequence[dict[str, Any]], prompt_tokens: int) -> list[GuardDecision]:
        """All input rules, synchronously. Raises ContentPolicyError / GuardrailUnavailableError."""
        decisions = self.check_rules(messages, prompt_tokens)
        try:
            found = self.classify(messages)
        except Exception as exc:
            found = self._failed(exc)
        return self._finish(decisions, found)

    async def check_async(self, messages: Sequence[dict[str, Any]], prompt_tokens: int) -> list[GuardDecision]:
        """``check`` with the classifier in a worker thread, bounded by ``injection.timeout_s``."""
        return await self.classify_async(messages, self.check_rules(messages, prompt_tokens))

    async def classify_async(self, messages: Sequence[dict[str, Any]],
                             decisions: list[GuardDecision]) -> list[GuardDecision]:
        """The classifier's part of ``check_async`` after ``check_rules`` passed with ``decisions``."""
        if not self.uses_classifier:
            return decisions
        try:
            found = await asyncio.wait_for(asyncio.to_thread(self.classify, messages),
                                           timeout=self.config.injection.timeout_s)
        except Exception as exc:  # includes TimeoutError
            found = self._failed(exc)
        return self._finish(decisions, found)

    def _failed(self, exc: BaseException) -> GuardDecision:
        log.warning("injection classifier failed: %s", type(exc).__name__)
        if self.config.injection.fail_mode == "open":
            return GuardDecision("input", "injection.classifier", "allow", "guardrail_unavailable")
        raise GuardrailUnavailableError("input guardrail unavailable; retry later") from exc

    @staticmethod
    def _finish(decisions: list[GuardDecision], found: GuardDecision | None) -> list[GuardDecision]:
        if found is not None:
            decisions.append(found)
        _raise_on_block(decisions)
        return decisions


def _raise_on_block(decisions: list[GuardDecision]) -> None:
    for d in decisions:
        if d.action == "block":
            err = ContentPolicyError(f"The request was blocked by the content policy (reason: {d.reason}).",
                                     reason=d.reason)
            err.decisions = list(decisions)  # type: ignore[attr-defined]
            raise err
