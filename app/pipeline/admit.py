"""Stage ``admit``: requests per minute of the key and its tenant — refused early, charged at ``reserve``.

No store call: the rpm subjects are charged by the ``reserve`` stage in the same atomic call as the
tokens and the budget (Redis: one round trip for all three), so the hot path makes two round trips
(reserve, settle). Here a request is refused with 429 ``rate_limit_exceeded`` (type ``requests``,
``retry-after`` / ``retry-after-ms``) only when this replica already knows the bucket is empty
(:mod:`app.policy.rpm_gate`), before routing, guardrails and token counting spend anything on it.
Sets estimated ``x-ratelimit-*-requests`` headers; ``reserve`` replaces them with the store's.
A request that ends before ``reserve`` is charged by the ``settle`` finisher.
"""

from __future__ import annotations

from app.pipeline.authenticate import identity_of, realtime
from app.pipeline.context import RequestContext
from app.policy.service import PolicyService

PENDING = "admit"  # ctx.extras key of the PendingRequests


class Admit:
    name = "admit"

    def __init__(self, policy: PolicyService) -> None:
        self.policy = policy

    async def __call__(self, ctx: RequestContext) -> None:
        if not realtime(ctx):  # a batch line: the batch lane has its own rate
            return
        pending = self.policy.enforcer.precheck(identity_of(ctx))
        ctx.extras[PENDING] = pending
        ctx.response_headers.update(pending.headers)
