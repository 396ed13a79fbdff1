"""Tenant records: tenant-level limits and budgets (over all the tenant's keys) and per-tenant options.

Resolution: the stored record (``PUT /admin/tenants/{id}``) > the YAML default
(``policy.tenants``) > ``policy.default_tenant``.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, field
from typing import Any, Protocol

from redis.asyncio import Redis

from app.policy.settings import TenantDefaults

TENANT_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
TENANT_FIELDS = ("rpm", "tpm", "budget_daily_usd", "budget_monthly_usd", "options")


@dataclass(slots=True)
class TenantRecord:
    id: str
    rpm: int | None = None
    tpm: int | None = None
    budget_daily_usd: float | None = None
    budget_monthly_usd: float | None = None
    options: dict[str, Any] = field(default_factory=dict)
    source: str = "default"  # default | yaml | store

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_defaults(cls, tenant_id: str, d: TenantDefaults, source: str) -> TenantRecord:
        return cls(tenant_id, d.rpm, d.tpm, d.budget_daily_usd, d.budget_monthly_usd, dict(d.options), source)


class TenantStore(Protocol):
    async def get(self, tenant_id: str) -> TenantRecord | None: ...
    async def put(self, record: TenantRecord) -> None: ...


class MemoryTenantStore:
    def __init__(self) -> None:
        self._records: dict[str, dict[str, Any]] = {}

    async def get(self, tenant_id: str) -> TenantRecord | None:
        data = self._records.get(tenant_id)
        return TenantRecord(**json.loads(json.dumps(data))) if data else None

    async def put(self, record: TenantRecord) -> None:
        self._records[record.id] = json.loads(json.dumps(record.to_dict()))


class RedisTenantStore:
    def __init__(self, redis: Redis, prefix: str) -> None:
        self.r, self.p = redis, prefix

    async def get(self, tenant_id: str) -> TenantRecord | None:
        raw = await self.r.get(f"{self.p}:tenant:{tenant_id}")
        return TenantRecord(**json.loads(raw)) if raw else None

    async def put(self, record: TenantRecord) -> None:
        await self.r.set(f"{self.p}:tenant:{record.id}", json.dumps(record.to_dict()))


def validate_tenant_body(body: dict[str, Any]) -> TenantDefaults:
    """A PUT body -> validated tenant fields (pydantic, extra fields refused)."""
    return TenantDefaults.model_validate(body)
