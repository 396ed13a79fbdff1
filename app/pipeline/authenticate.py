"""Stage ``authenticate``: who is asking — an API key from the policy store, or (auth off) the tenant header.

401 ``invalid_api_key`` for a missing, unknown, revoked or expired key; 503 when the key store is
unreachable (authentication always fails closed).
"""

from __future__ import annotations

from app.config import AuthConfig
from app.pipeline.context import Principal, RequestContext
from app.policy.service import Identity, PolicyService
from app.policy.tenants import TenantRecord


def realtime(ctx: RequestContext) -> bool:
    """False for batch-lane lines: the batch reserved and settles its own worst case (docs/decisions.md)."""
    return ctx.extras.get("lane", "realtime") != "batch"


def identity_of(ctx: RequestContext) -> Identity:
    """The policy view of ``ctx.principal`` (set by this stage, or preset by an internal caller)."""
    p = ctx.principal
    return Identity(p.tenant, p.key, p.tenant_record if p.tenant_record is not None else TenantRecord(p.tenant))


class Authenticate:
    name = "authenticate"

    def __init__(self, policy: PolicyService | AuthConfig) -> None:
        if isinstance(policy, AuthConfig):  # the pre-policy wiring: an in-memory store (no keys yet)
            from app.policy.settings import PolicyConfig

            policy = PolicyService(PolicyConfig(), auth_enabled=policy.enabled, tenant_header=policy.tenant_header)
        self.policy = policy

    async def __call__(self, ctx: RequestContext) -> None:
        if ctx.principal is not None:  # an internal caller (batch lane) that authenticated already
            return
        who = await self.policy.authenticate(ctx.headers)
        ctx.principal = Principal(tenant=who.tenant, key_id=who.key.id if who.key is not None else None,
                                  key=who.key, tenant_record=who.tenant_record, models=who.models)
