"""Stage ``guard_input``: the tenant's input guardrails — prompt caps in tokens of the target model,
denylists, injection patterns and the injection classifier. A block is a 400
``content_policy_violation``; a flag adds ``x-llmgw-guardrail``; every decision is counted and logged."""

from __future__ import annotations

import asyncio
import contextlib

from app.guardrails.decisions import flag_header, record
from app.guardrails.input import InputGuard
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

    def __init__(self, guardrails: Guardrails, overlap: bool = False) -> None:
        self.guardrails = guardrails
        self.overlap = overlap  # the classifier as a gate beside generation (ingress.overlap_checks)

    async def __call__(self, ctx: RequestContext) -> None:
        guard = self.guardrails.input_guard(ctx.tenant, tenant_option(ctx, "guardrails", None))
        gen = ctx.gen
        messages = gen.messages if gen.messages is not None else [{"role": "user", "content": gen.prompt or ""}]
        try:
            rules = guard.check_rules(messages, ctx.prompt_tokens)  # caps, denylist, patterns: never speculated
        except Exception as exc:
            note(ctx, list(getattr(exc, "decisions", [])))
            raise
        if self.overlap and guard.uses_classifier:
            ctx.gates.append(asyncio.create_task(self._classify(ctx, guard, messages, rules)))
            return
        await self._classify(ctx, guard, messages, rules)

    @staticmethod
    async def _classify(ctx: RequestContext, guard: InputGuard, messages: list, rules: list) -> None:
        if ctx.embedding is not None:  # the route's deferred embedding of the same text: the classifier's memo hit
            with contextlib.suppress(Exception):
                await asyncio.shield(ctx.embedding)
        try:
            decisions = await guard.classify_async(messages, rules)
        except Exception as exc:
            note(ctx, list(getattr(exc, "decisions", [])))
            raise
        note(ctx, decisions)
