"""Stage ``guard_input``: the tenant's input guardrails — prompt caps in tokens of the target model,
denylists, injection patterns and the injection classifier. A block is a 400
``content_policy_violation``; a flag adds ``x-llmgw-guardrail``; every decision is counted and logged."""

from __future__ import annotations

from app.guardrails.decisions import flag_header, record
from app.guardrails.service import Guardrails
from app.pipeline.context import RequestContext
from app.pipeline.route import tenant_option


def note(ctx: RequestContext, decisions: list) -> None:
    """Count decisions, keep them for the request log, and name flagged ones in the response header."""
    if not decisions:
        return
    record(decisions)
    ctx.guardrail_events.extend(decisions)
    ctx.extras.setdefault("evaluation", {})["guardrails"] = [d.to_log() for d in ctx.guardrail_events]
    flagged = flag_header(ctx.guardrail_events)
    if flagged:
        ctx.response_headers["x-llmgw-guardrail"] = flagged


class GuardInput:
    name = "guard_input"

    def __init__(self, guardrails: Guardrails) -> None:
        self.guardrails = guardrails

    async def __call__(self, ctx: RequestContext) -> None:
        guard = self.guardrails.input_guard(ctx.tenant, tenant_option(ctx, "guardrails", None))
        gen = ctx.gen
        messages = gen.messages if gen.messages is not None else [{"role": "user", "content": gen.prompt or ""}]
        try:
            decisions = await guard.check_async(messages, ctx.prompt_tokens)
        except Exception as exc:
            note(ctx, list(getattr(exc, "decisions", [])))
            raise
        note(ctx, decisions)
