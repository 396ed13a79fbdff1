"""Stage ``reserve``: requests per minute (from ``admit``), tokens per minute (prompt + effective
max_tokens) and the worst-case spend, charged all or nothing in one call (Redis: one round trip).

Runs after ``route`` and ``tokens`` (it needs ``ctx.candidates``, ``ctx.prompt_tokens`` and
``ctx.max_tokens``). The spend is reserved at the highest-priced candidate, so a fallback can never
overspend; candidates without a price are dropped (fail closed) and an unpriced routed model is a
403 ``model_not_priced``. The hold is settled exactly once by the ``settle`` finisher. Batch-lane
lines (``ctx.extras["lane"] == "batch"``) only get the price check: their batch holds the money.
"""

from __future__ import annotations

from app.pipeline.admit import PENDING
from app.pipeline.authenticate import identity_of, realtime
from app.pipeline.context import RequestContext
from app.policy.service import PolicyService

HOLD = "reserve"  # ctx.extras key of the Hold


class Reserve:
    name = "reserve"

    def __init__(self, policy: PolicyService) -> None:
        self.policy = policy

    async def __call__(self, ctx: RequestContext) -> None:
        enforcer = self.policy.enforcer
        billable = [c for c in ctx.candidates if c.kind != "stale_cache"]
        priced = set(enforcer.priced([c.model for c in billable]))
        ctx.candidates = [c for c in ctx.candidates if c.kind == "stale_cache" or c.model in priced]
        models = list(dict.fromkeys(c.model for c in ctx.candidates if c.kind != "stale_cache"))
        ctx.price_version = enforcer.prices.version if enforcer.prices is not None else None
        if not realtime(ctx):  # a batch line: its batch holds the reservation
            return
        hold, headers = await enforcer.reserve(identity_of(ctx), ctx.request_id, ctx.prompt_tokens,
                                               ctx.max_tokens, models, requests=ctx.extras.get(PENDING))
        ctx.extras[HOLD] = hold
        ctx.reservations.append(hold)
        ctx.response_headers.update(headers)
