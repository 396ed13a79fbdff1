"""Usage: ``GET /admin/usage?tenant=&key=&period=`` (admin: anyone's) and ``GET /v1/usage`` (a key's
own usage and its tenant's, with the key itself; ``period`` = day | month | YYYY-MM-DD | YYYY-MM)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from app.errors import PermissionDeniedError
from app.policy.service import PolicyService
from app.policy.usage import usage_report


async def admin_usage(policy: PolicyService, query: Mapping[str, str]) -> dict[str, Any]:
    return await usage_report(policy, tenant=query.get("tenant") or None, key_id=query.get("key") or None,
                              period=query.get("period") or None)


async def own_usage(policy: PolicyService, headers: Mapping[str, str], query: Mapping[str, str]) -> dict[str, Any]:
    """Authenticated like a completion; the caller sees its key and its tenant, nothing else."""
    who = await policy.authenticate(headers)
    if who.key is None:  # auth off: the tenant header's tenant, its own row only
        report = await usage_report(policy, tenant=who.tenant, period=query.get("period") or None)
        report["data"] = [r for r in report["data"] if r["owner"] == "tenant"]
        return report
    asked = query.get("key")
    if asked and asked != who.key.id:
        raise PermissionDeniedError("A key may only read its own usage.", code="usage_not_allowed")
    return await usage_report(policy, tenant=who.tenant, key_id=who.key.id, period=query.get("period") or None)
