"""Who a Files/Batches/async request acts for: the pipeline's own authenticate stage, then the service."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.batch.service import BatchService
from app.errors import NotFoundError
from app.pipeline.context import Principal, RequestContext


@dataclass(frozen=True, slots=True)
class BatchScope:
    service: BatchService
    principal: Principal

    @property
    def tenant(self) -> str:
        return self.principal.tenant

    @property
    def key_id(self) -> str | None:
        return self.principal.key_id

    @property
    def models(self) -> tuple[str, ...] | None:
        return self.principal.models


async def batch_scope(service: BatchService | None, pipeline: Any, headers: Any, path: str) -> BatchScope:
    """404 when the lane is off (no redis.url); 401 like any endpoint for a bad key."""
    if service is None:
        raise NotFoundError("The batch lane is disabled in this deployment: it needs redis.url (docs/batch.md).")
    ctx = RequestContext(endpoint="batch", path=path, headers=headers)
    await pipeline.stage("authenticate")(ctx)
    return BatchScope(service, ctx.principal)
