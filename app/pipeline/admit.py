"""Stage ``admit``: requests per minute of the key and its tenant (one atomic check for both).

Sets the ``x-ratelimit-*-requests`` headers; a 429 ``rate_limit_exceeded`` (type ``requests``)
carries them with ``retry-after`` / ``retry-after-ms``.
"""

from __future__ import annotations

from app.pipeline.authenticate import identity_of, realtime
from app.pipeline.context import RequestContext
from app.policy.service import PolicyService


class Admit:
    name = "admit"

    def __init__(self, policy: PolicyService) -> None:
        self.policy = policy

    async def __call__(self, ctx: RequestContext) -> None:
        if not realtime(ctx):  # a batch line: the batch lane has its own rate
            return
        ctx.response_headers.update(await self.policy.enforcer.admit(identity_of(ctx)))
