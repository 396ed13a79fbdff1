"""Finisher ``cost`` (until the policy ledger's settle replaces it): the request's cost from the price table.

A cache hit costs 0 and counts what it would have cost as savings.
"""

from __future__ import annotations

from app.observability.cost import cost_usd
from app.pipeline.context import RequestContext


class Cost:
    name = "cost"

    async def __call__(self, ctx: RequestContext) -> None:
        last = ctx.final
        if last is None:
            ctx.cost_usd = 0.0
            return
        cost = cost_usd(last.model, last.prompt_tokens, last.completion_tokens) if last.model else 0.0
        if ctx.answer is not None and ctx.answer.source != "generated":
            ctx.cost_usd, ctx.savings_usd = 0.0, cost
        else:
            ctx.cost_usd = cost
