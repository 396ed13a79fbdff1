"""Resolve the tenant of a request from its API key (keys live in env vars, never in config)."""

from __future__ import annotations

import hmac
import os
import re
from collections.abc import Mapping

from app.config import AuthConfig
from app.errors import AuthenticationError

_TENANT_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def bearer_token(headers: Mapping[str, str]) -> str | None:
    value = headers.get("authorization") or ""
    if value.lower().startswith("bearer "):
        return value[7:].strip() or None
    return headers.get("x-api-key") or None


def resolve_tenant(headers: Mapping[str, str], cfg: AuthConfig) -> str:
    """The tenant owning the request. With auth off: the tenant header or "default"."""
    if not cfg.enabled:
        tenant = headers.get(cfg.tenant_header) or "default"
        if not _TENANT_RE.match(tenant):
            raise AuthenticationError("Invalid tenant name.", code="invalid_tenant")
        return tenant
    token = bearer_token(headers)
    if token:
        for tenant, env in cfg.tenant_key_envs.items():
            key = os.environ.get(env)
            if key and hmac.compare_digest(key.encode(), token.encode()):
                return tenant
    raise AuthenticationError("Incorrect or missing API key. Pass it as 'Authorization: Bearer <key>'.")


def is_admin(headers: Mapping[str, str], cfg: AuthConfig) -> bool:
    """Admin endpoints need the admin key when it is set; with no admin key set only auth-off setups pass."""
    key = os.environ.get(cfg.admin_key_env)
    if not key:
        return not cfg.enabled
    token = bearer_token(headers) or ""
    return hmac.compare_digest(key.encode(), token.encode())
