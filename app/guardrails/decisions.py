"""Guardrail decisions: what a rule found and did; metrics, log fields and the flag header."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Literal

Stage = Literal["input", "output"]
Action = Literal["block", "flag", "redact", "allow", "log"]
FLAG_HEADER = "x-llmgw-guardrail"


@dataclass(frozen=True, slots=True)
class GuardDecision:
    stage: Stage
    rule: str  # e.g. "injection.classifier", "injection.pattern", "denylist", "pii.EMAIL", "secret.JWT"
    action: Action
    reason: str  # reason code, e.g. "prompt_injection", "banned_topic:weapons", "pii_email"
    score: float | None = None
    count: int = 1

    def to_log(self) -> dict:
        """A request-log field (no matched text, only what fired)."""
        return {k: v for k, v in asdict(self).items() if v is not None}


def record(decisions: Iterable[GuardDecision]) -> None:
    """Count each decision in ``llmgw_guardrail_triggers_total{stage, rule, action}`` (blocks also in
    ``llmgw_guardrail_rejections_total``)."""
    from app.observability.metrics import GUARDRAIL, GUARDRAIL_TRIGGERS

    for d in decisions:
        GUARDRAIL_TRIGGERS.labels(stage=d.stage, rule=d.rule, action=d.action).inc(d.count)
        if d.action == "block":
            GUARDRAIL.labels(guardrail=d.rule, stage=d.stage).inc()


def flag_header(decisions: Iterable[GuardDecision]) -> str | None:
    """The ``x-llmgw-guardrail`` value for flagged (and redacted) findings: ``rule=action;...`` or None."""
    parts = sorted({f"{d.rule}={d.action}" for d in decisions if d.action in ("flag", "redact", "log")})
    return ";".join(parts) or None


def blocking(decisions: Iterable[GuardDecision]) -> GuardDecision | None:
    return next((d for d in decisions if d.action == "block"), None)
