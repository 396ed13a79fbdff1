"""Usage reports: requests, tokens, spend, budget left and cache savings per key and tenant and period."""

from __future__ import annotations

import re
from typing import Any

from app.errors import InvalidRequestError
from app.policy.periods import Period

_DAY, _MONTH = re.compile(r"^\d{4}-\d{2}-\d{2}$"), re.compile(r"^\d{4}-\d{2}$")


def period_of(service, period: str | None) -> tuple[str, str]:
    """(kind, label) from ``day`` (default), ``month``, ``YYYY-MM-DD`` or ``YYYY-MM``."""
    cal, now = service.enforcer.calendar, service.clock()
    period = period or "day"
    if period in ("day", "month"):
        p: Period = cal.period(period, now)
        return period, p.label
    if _DAY.match(period):
        return "day", period
    if _MONTH.match(period):
        return "month", period
    raise InvalidRequestError("period must be day, month, YYYY-MM-DD or YYYY-MM.", param="period")


def _row(owner: str, ident: str, tenant: str, fields: dict[str, int], budget_usd: float | None) -> dict[str, Any]:
    spent = fields.get("spent", 0) / 1e9
    return {
        "owner": owner, "id": ident, "tenant": tenant, "requests": fields.get("requests", 0),
        "prompt_tokens": fields.get("prompt_tokens", 0), "completion_tokens": fields.get("completion_tokens", 0),
        "spend_usd": round(spent, 9), "reserved_usd": round(fields.get("reserved", 0) / 1e9, 9),
        "savings_usd": round(fields.get("savings", 0) / 1e9, 9), "budget_usd": budget_usd,
        "budget_left_usd": None if budget_usd is None else round(max(budget_usd - spent, 0.0), 9),
    }


async def usage_report(service, *, tenant: str | None = None, key_id: str | None = None,
                       period: str | None = None) -> dict[str, Any]:
    """Rows for the tenant and each of its keys (or one key; or every tenant with keys when neither)."""
    kind, label = period_of(service, period)
    budget_attr = "budget_daily_usd" if kind == "day" else "budget_monthly_usd"
    if key_id is not None:
        keys = [await service.get_key(key_id)]
        tenants = [] if tenant is None else [tenant]
    else:
        keys = await service.list_keys(tenant)
        tenants = [tenant] if tenant is not None else sorted({k.tenant for k in keys} | set(service.cfg.tenants))
    wanted = [f"tenant:{t}:{kind}:{label}" for t in tenants] + [f"key:{k.id}:{kind}:{label}" for k in keys]
    rows = await service.enforcer.ledger.read(wanted)
    out = []
    for t in tenants:
        record = await service.tenant(t)
        out.append(_row("tenant", t, t, rows.get(f"tenant:{t}:{kind}:{label}", {}), getattr(record, budget_attr)))
    for k in keys:
        out.append(_row("key", k.id, k.tenant, rows.get(f"key:{k.id}:{kind}:{label}", {}), getattr(k, budget_attr))
                   | {"name": k.name})
    return {"object": "usage", "period": kind, "label": label, "timezone": service.cfg.timezone, "data": out}
