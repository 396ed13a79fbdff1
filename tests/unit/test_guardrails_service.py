"""The Guardrails facade: per-tenant guards, a classifier that cannot load fails closed, metrics, header."""

from __future__ import annotations

import pytest

from app.config import GatewayConfig
from app.errors import GuardrailUnavailableError
from app.guardrails import GuardDecision, Guardrails, GuardrailsConfig, flag_header, record
from app.observability.metrics import GUARDRAIL, GUARDRAIL_TRIGGERS


class Scorer:
    threshold = 0.5

    def score(self, text: str, prescreen: bool = True) -> float:
        return 0.9 if "attack" in text else 0.1


def test_gateway_config_defaults_are_the_local_ones():
    cfg = GatewayConfig.model_validate({"pools": [{"name": "small", "engine": {"model": "m"}}],
                                        "router": {"enabled": False}})
    assert cfg.guardrails.input.injection.action == "flag"
    assert cfg.guardrails.output.pii.action == "redact" and cfg.guardrails.output.secrets.enabled


def test_guards_per_tenant_are_cached_and_distinct():
    g = Guardrails(GuardrailsConfig(tenants={"strict": {"input": {"injection": {"action": "block"}}}}), Scorer())
    assert g.input_guard("strict") is g.input_guard("strict")
    assert g.input_guard("a") is g.input_guard("b")  # tenants without an entry share the base guard
    assert g.input_guard("strict") is not g.input_guard("a")
    assert g.output_guard("strict", {"output": {"pii": {"action": "block"}}}).block_on
    decisions = g.input_guard("a").check([{"role": "user", "content": "an attack"}], prompt_tokens=3)
    assert decisions[0].action == "flag"


def test_missing_artifact_fails_closed():
    cfg = GuardrailsConfig.model_validate({"input": {"injection": {"artifact": "/nonexistent/injection.npz"}}})
    guard = Guardrails(cfg).input_guard()
    with pytest.raises(GuardrailUnavailableError):
        guard.check([{"role": "user", "content": "hello"}], prompt_tokens=2)
    off = GuardrailsConfig.model_validate({"input": {"injection": {"artifact": "/nonexistent", "action": "allow"}}})
    assert Guardrails(off).input_guard().check([{"role": "user", "content": "hello"}], prompt_tokens=2) == []


def test_record_counts_every_decision_and_blocks():
    trig = GUARDRAIL_TRIGGERS.labels(stage="output", rule="pii.EMAIL", action="redact")
    rej = GUARDRAIL.labels(guardrail="denylist", stage="input")
    before_t, before_r = trig._value.get(), rej._value.get()
    record([GuardDecision("output", "pii.EMAIL", "redact", "pii_email", count=2),
            GuardDecision("input", "denylist", "block", "banned_topic:x")])
    assert trig._value.get() == before_t + 2 and rej._value.get() == before_r + 1


def test_flag_header():
    assert flag_header([]) is None
    value = flag_header([GuardDecision("input", "injection.classifier", "flag", "prompt_injection", 0.9),
                         GuardDecision("output", "pii.EMAIL", "redact", "pii_email"),
                         GuardDecision("input", "denylist", "allow", "banned_topic:x")])
    assert value == "injection.classifier=flag;pii.EMAIL=redact"
