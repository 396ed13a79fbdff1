"""One dispatcher for the policy admin routes, so the ingress maps each route family in one line:

    /admin/keys, /admin/keys/{id}, /admin/keys/{id}/rotate      -> app.api.admin_keys
    /admin/tenants/{id}                                          -> app.api.admin_tenants
    /admin/usage                                                 -> app.api.usage.admin_usage
    /v1/usage                                                    -> app.api.usage.own_usage (the key itself)

Admin routes need the admin key (``require_admin``: 403 when none is configured).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from app.api import admin_keys, admin_tenants, usage
from app.config import AuthConfig
from app.errors import MethodNotAllowedError, NotFoundError
from app.policy.auth import require_admin
from app.policy.service import PolicyService

_KEY = re.compile(r"^/admin/keys/([A-Za-z0-9_]+)$")
_ROTATE = re.compile(r"^/admin/keys/([A-Za-z0-9_]+)/rotate$")
_TENANT = re.compile(r"^/admin/tenants/([^/]+)$")


async def dispatch(policy: PolicyService, auth: AuthConfig, method: str, path: str, headers: Mapping[str, str],
                   query: Mapping[str, str], body: Any = None, client: str | None = None) -> dict[str, Any]:
    path = path.rstrip("/") or "/"
    if path == "/v1/usage":
        _method(method, "GET")
        return await usage.own_usage(policy, headers, query)
    require_admin(headers, auth)
    actor = f"admin@{client}" if client else "admin"
    if path == "/admin/keys":
        if method == "POST":
            return await admin_keys.create_key(policy, body, actor)
        _method(method, "GET", "POST")
        return await admin_keys.list_keys(policy, query)
    if m := _ROTATE.match(path):
        _method(method, "POST")
        return await admin_keys.rotate_key(policy, m.group(1), body, headers, actor)
    if m := _KEY.match(path):
        key_id = m.group(1)
        if method == "GET":
            return await admin_keys.get_key(policy, key_id)
        if method == "PATCH":
            return await admin_keys.update_key(policy, key_id, body, actor)
        _method(method, "GET", "PATCH", "DELETE")
        return await admin_keys.revoke_key(policy, key_id, actor)
    if m := _TENANT.match(path):
        if method == "PUT":
            return await admin_tenants.put_tenant(policy, m.group(1), body, actor)
        _method(method, "GET", "PUT")
        return await admin_tenants.get_tenant(policy, m.group(1))
    if path == "/admin/usage":
        _method(method, "GET")
        return await usage.admin_usage(policy, query)
    raise NotFoundError("Unknown admin endpoint. See docs/policy.md.")


def _method(method: str, *allowed: str) -> None:
    if method not in allowed:
        raise MethodNotAllowedError(f"Use {' or '.join(allowed)} for this endpoint.")
