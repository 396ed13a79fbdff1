"""``Guardrails``: the two pipeline stages' entry point, one per ingress replica.

Builds and caches an ``InputGuard`` / ``OutputGuard`` per resolved tenant config and loads the injection
classifier once (only if some config uses it). A classifier artifact that cannot load is logged at start
and makes every classified request fail closed (503 ``guardrail_unavailable``) or pass (``fail_mode:
open``) — it never silently disables detection.
"""

from __future__ import annotations

import logging
from typing import Any

from app.guardrails.decisions import GuardDecision, record
from app.guardrails.detector import EmbedFn, InjectionDetector, InjectionScorer
from app.guardrails.input import InputGuard
from app.guardrails.output import OutputGuard
from app.guardrails.settings import GuardrailsConfig

log = logging.getLogger(__name__)


class _Unavailable:
    """Stands in for a classifier that failed to load: every score raises (the guard's fail mode decides)."""

    threshold = 1.0

    def __init__(self, exc: Exception) -> None:
        self.exc = exc

    def score(self, text: str, prescreen: bool = True) -> float:
        raise self.exc


class Guardrails:
    def __init__(self, config: GuardrailsConfig, detector: InjectionScorer | None = None,
                 embed: EmbedFn | None = None) -> None:
        self.config = config
        self._detector = detector
        self._embed = embed
        self._inputs: dict[str, InputGuard] = {}  # resolve_key -> guard (bounded like the config cache)
        self._outputs: dict[str, OutputGuard] = {}

    def detector(self, artifact: str | None = None) -> InjectionScorer:
        if self._detector is None:
            try:
                self._detector = InjectionDetector.load(artifact, embed=self._embed)
            except Exception as exc:
                log.error("injection classifier unavailable: %s", exc)
                self._detector = _Unavailable(exc)
        return self._detector

    def resolve(self, tenant: str | None = None, override: dict[str, Any] | None = None) -> GuardrailsConfig:
        return self.config.resolve(tenant, override)

    def input_guard(self, tenant: str | None = None, override: dict[str, Any] | None = None) -> InputGuard:
        key = self.config.resolve_key(tenant, override)
        guard = self._inputs.get(key)
        if guard is None:
            cfg = self.resolve(tenant, override)
            inj = cfg.input.injection
            needs = cfg.enabled and cfg.input.enabled and inj.enabled and inj.action != "allow"
            guard = InputGuard(cfg, self.detector(inj.artifact) if needs else None)
            if len(self._inputs) < 4096:
                self._inputs[key] = guard
        return guard

    def output_guard(self, tenant: str | None = None, override: dict[str, Any] | None = None) -> OutputGuard:
        key = self.config.resolve_key(tenant, override)
        guard = self._outputs.get(key)
        if guard is None:
            cfg = self.resolve(tenant, override)
            out = cfg.output if cfg.enabled else cfg.output.model_copy(update={"enabled": False})
            guard = OutputGuard(out)
            if len(self._outputs) < 4096:
                self._outputs[key] = guard
        return guard

    @staticmethod
    def record(decisions: list[GuardDecision]) -> None:
        record(decisions)
