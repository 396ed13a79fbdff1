"""Input and output guardrails (pure Python, no ray): see docs/guardrails.md.

Pipeline entry points: ``Guardrails(config.guardrails)`` once per replica, then per request
``input_guard(tenant, override).check_async(messages, prompt_tokens)`` and
``output_guard(tenant, override).check(text)`` / ``.stream()``; ``record(decisions)`` counts them.
"""

from app.guardrails.decisions import FLAG_HEADER, GuardDecision, flag_header, record
from app.guardrails.input import InputGuard
from app.guardrails.output import CONTENT_FILTER, OutputGuard, OutputResult, StreamRedactor, redact_for_log
from app.guardrails.service import Guardrails
from app.guardrails.settings import GuardrailsConfig, for_tenant

__all__ = ["CONTENT_FILTER", "FLAG_HEADER", "GuardDecision", "Guardrails", "GuardrailsConfig", "InputGuard",
           "OutputGuard", "OutputResult", "StreamRedactor", "flag_header", "for_tenant", "record", "redact_for_log"]
