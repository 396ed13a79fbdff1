"""Admin API of API keys: plain async functions (policy service + request inputs -> dict).

``POST /admin/keys`` (the key is in this answer only), ``GET /admin/keys[?tenant=]`` (never a
secret), ``GET|PATCH|DELETE /admin/keys/{id}`` (DELETE revokes: the record stays for audit and
usage), ``POST /admin/keys/{id}/rotate`` (``Idempotency-Key`` header: a replay returns the same new
key). The caller checks the admin key first (``app.policy.auth.require_admin``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ValidationError

from app.errors import InvalidRequestError
from app.policy.admin_models import KeyCreate, KeyUpdate, RotateRequest
from app.policy.service import PolicyService
from app.schemas import validation_error


def parse_body(model: type[BaseModel], body: Mapping[str, Any] | None) -> BaseModel:
    if body is not None and not isinstance(body, Mapping):
        raise InvalidRequestError("The body must be a JSON object.")
    try:
        return model.model_validate(dict(body or {}))
    except ValidationError as exc:
        raise validation_error(exc) from None


async def create_key(policy: PolicyService, body: Mapping[str, Any], actor: str = "admin") -> dict[str, Any]:
    record, secret = await policy.create_key(parse_body(KeyCreate, body), actor)
    return {"object": "api_key", **record.public(), "key": secret}


async def list_keys(policy: PolicyService, query: Mapping[str, str]) -> dict[str, Any]:
    return {"object": "list", "data": [r.public() for r in await policy.list_keys(query.get("tenant") or None)]}


async def get_key(policy: PolicyService, key_id: str) -> dict[str, Any]:
    return {"object": "api_key", **(await policy.get_key(key_id)).public()}


async def update_key(policy: PolicyService, key_id: str, body: Mapping[str, Any],
                     actor: str = "admin") -> dict[str, Any]:
    record = await policy.update_key(key_id, parse_body(KeyUpdate, body), actor)
    return {"object": "api_key", **record.public()}


async def revoke_key(policy: PolicyService, key_id: str, actor: str = "admin") -> dict[str, Any]:
    record = await policy.revoke_key(key_id, actor)
    return {"object": "api_key", **record.public()}


async def rotate_key(policy: PolicyService, key_id: str, body: Mapping[str, Any] | None,
                     headers: Mapping[str, str], actor: str = "admin") -> dict[str, Any]:
    spec = parse_body(RotateRequest, body)
    idem = headers.get("idempotency-key") or None
    if idem is not None and not 1 <= len(idem) <= 255:
        raise InvalidRequestError("Idempotency-Key must be 1-255 characters.", param="Idempotency-Key")
    record, secret, replayed = await policy.rotate_key(key_id, actor, spec.overlap_s, idem)
    return {"object": "api_key", **record.public(), "key": secret, "replayed": replayed}
