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


class BatchLaneDisabled(NotFoundError):
    """The deployment has no Redis (or ``batch.enabled: false``): there is no in-memory batch lane."""

    code = "batch_lane_disabled"


DISABLED_MESSAGE = ("The batch lane (/v1/files, /v1/batches, /v1/async) is off in this deployment: it keeps files, "
                    "batches and results in Redis, and none is configured. Set redis.url (e.g. "
                    "LLMGW_REDIS__URL=redis://127.0.0.1:6379/0 make run) and keep batch.enabled; see docs/batch.md.")


async def batch_scope(service: BatchService | None, pipeline: Any, headers: Any, path: str) -> BatchScope:
    """404 ``batch_lane_disabled`` when the lane is off (no Redis); 401 like any endpoint for a bad key."""
    if service is None:
        raise BatchLaneDisabled(DISABLED_MESSAGE)
    ctx = RequestContext(endpoint="batch", path=path, headers=headers)
    await pipeline.stage("authenticate")(ctx)
    return BatchScope(service, ctx.principal)
