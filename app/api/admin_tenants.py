"""Admin API of tenants: ``GET /admin/tenants/{id}`` (the effective record: store > YAML > default)
and ``PUT /admin/tenants/{id}`` (rpm, tpm, budgets, options; replaces the stored record)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from app.errors import InvalidRequestError
from app.policy.service import PolicyService
from app.policy.tenants import TENANT_RE
from app.schemas import validation_error


def _tenant_id(tenant_id: str) -> str:
    if not TENANT_RE.match(tenant_id):
        raise InvalidRequestError("tenant must match [A-Za-z0-9_.-]{1,64}", param="id")
    return tenant_id


async def get_tenant(policy: PolicyService, tenant_id: str) -> dict[str, Any]:
    return {"object": "tenant", **(await policy.tenant(_tenant_id(tenant_id))).to_dict()}


async def put_tenant(policy: PolicyService, tenant_id: str, body: Mapping[str, Any],
                     actor: str = "admin") -> dict[str, Any]:
    if not isinstance(body, Mapping):
        raise InvalidRequestError("The body must be a JSON object.")
    try:
        record = await policy.put_tenant(_tenant_id(tenant_id), dict(body), actor)
    except ValidationError as exc:
        raise validation_error(exc) from None
    return {"object": "tenant", **record.to_dict()}
