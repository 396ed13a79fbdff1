"""``GET /v1/models``: only what the caller's key may call (deny by default; auth off lists everything)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from app.policy.keys import model_allowed
from app.policy.service import PolicyService


async def list_models(policy: PolicyService, names: Iterable[str], headers: Mapping[str, str]) -> dict[str, Any]:
    """``names``: every served name (``GatewayConfig.model_names()``); a key sees those its scope allows."""
    who = await policy.authenticate(headers)
    allowed = [n for n in names if who.key is None or model_allowed(who.key.models, n)]
    return {"object": "list",
            "data": [{"id": n, "object": "model", "created": 0, "owned_by": "llm-gateway"} for n in allowed]}
