"""Finisher ``settle``: the actual tokens and cost of the answer, booked once when it ended.

Success, error or client disconnect: the usage is the last chunk's (an aborted stream pays the output
tokens it produced plus its input); a cache hit (or the stale cache) costs 0 and counts as savings.
Token reservations are reconciled (unused tokens refunded) and the spend hold released; budget
alerts crossed for the first time fire here. A request that ended before ``reserve`` (and was not
refused with a 429) is charged its one request against the rpm limits here. Also sets
``ctx.cost_usd`` and ``ctx.price_version``.
"""

from __future__ import annotations

import logging

from app.observability import metrics
from app.pipeline.admit import PENDING
from app.pipeline.authenticate import identity_of
from app.pipeline.context import RequestContext
from app.pipeline.reserve import HOLD
from app.policy.enforce import Hold
from app.policy.ledger import Usage, to_nusd
from app.policy.service import PolicyService
from app.tokens import CHARS_PER_TOKEN

logger = logging.getLogger("llmgw.policy")


def actual_usage(ctx: RequestContext) -> tuple[int, int, str]:
    """(prompt tokens, completion tokens, model) of what the client received."""
    last = ctx.final
    if last is None:
        return 0, 0, ""
    prompt = last.prompt_tokens or ctx.prompt_tokens
    completion = last.completion_tokens
    if completion == 0 and ctx.text and (ctx.aborted or ctx.error is not None):
        completion = max(1, len(ctx.text) // CHARS_PER_TOKEN)  # counts arrive with a provider's last chunk
    model = last.model or ctx.response_headers.get("x-llmgw-model", "")
    return prompt, completion, model


class Settle:
    name = "settle"

    def __init__(self, policy: PolicyService) -> None:
        self.policy = policy

    async def __call__(self, ctx: RequestContext) -> None:
        enforcer = self.policy.enforcer
        pending = ctx.extras.pop(PENDING, None)
        if pending is not None and not pending.charged and ctx.status != 429 and ctx.principal is not None:
            await enforcer.charge_unreserved(identity_of(ctx), pending)
        table = enforcer.prices
        hold: Hold | None = ctx.extras.pop(HOLD, None)
        prompt, completion, model = actual_usage(ctx)
        cost = table.cost(model, prompt, completion) if table is not None and model else 0.0
        if cost is None and hold is not None and hold.worst_model:  # an unexpected response model name
            logger.warning("response model %r has no price: billed at the reserved model's price", model)
            cost = table.cost(hold.worst_model, prompt, completion)
        cost = cost or 0.0
        savings, cached = 0.0, ctx.answer is not None and ctx.answer.source != "generated"
        if cached:
            cost, savings = 0.0, cost
            if savings:
                metrics.COST_SAVED.labels(model or "-", ctx.tenant).inc(savings)
        ctx.cost_usd, ctx.savings_usd = cost, savings
        if table is not None:
            ctx.price_version = table.version
        if hold is None or ctx.principal is None:
            return
        usage = Usage(to_nusd(cost), prompt, completion, to_nusd(savings))
        await enforcer.settle(identity_of(ctx), hold, usage, tpm_tokens=0 if cached else None)
