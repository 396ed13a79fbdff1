"""Stage ``authenticate``: who is asking (interim: env-var keys; the policy layer's key store replaces it)."""

from __future__ import annotations

from app.config import AuthConfig
from app.pipeline.context import Principal, RequestContext
from app.policy.auth import resolve_tenant


class Authenticate:
    name = "authenticate"

    def __init__(self, auth: AuthConfig) -> None:
        self.auth = auth

    async def __call__(self, ctx: RequestContext) -> None:
        ctx.principal = Principal(tenant=resolve_tenant(ctx.headers, self.auth))
