"""Admin access: the admin key (``$LLMGW_ADMIN_KEY``, or the env var ``auth.admin_key_env`` names).

Constant-time comparison; with no admin key configured every admin endpoint answers 403 (never
open). ``make run`` without one writes a local key to ``.cache/admin_key`` (:func:`ensure_local_admin_key`)
and exports it to the gateway processes. Request keys and tenants: :mod:`app.policy.service`.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from pathlib import Path

from app.config import AuthConfig
from app.errors import PermissionDeniedError
from app.policy.service import admin_key_matches, bearer_token

__all__ = ["admin_key", "bearer_token", "ensure_local_admin_key", "guard_metrics", "readyz_view", "require_admin"]


def admin_key(cfg: AuthConfig, environ: Mapping[str, str] = os.environ) -> str | None:
    return environ.get(cfg.admin_key_env) or None


def require_admin(headers: Mapping[str, str], cfg: AuthConfig, environ: Mapping[str, str] = os.environ) -> None:
    """403 unless the request carries the configured admin key (none configured: always 403)."""
    if admin_key(cfg, environ) is None:
        raise PermissionDeniedError(f"Admin endpoints are disabled: no admin key is configured (set "
                                    f"${cfg.admin_key_env}).", code="admin_key_not_configured")
    if not admin_key_matches(bearer_token(headers), admin_key(cfg, environ)):
        raise PermissionDeniedError("Admin endpoints need the admin key (Authorization: Bearer <key>).",
                                    code="admin_key_required")


def ensure_local_admin_key(path: str | Path) -> tuple[str, bool]:
    """(the key in ``path``, created now?) — a new random key, file mode 0600, when there is none."""
    p = Path(path)
    if p.is_file() and (existing := p.read_text().strip()):
        return existing, False
    p.parent.mkdir(parents=True, exist_ok=True)
    key = "sk-llmgw-admin-" + secrets.token_urlsafe(32)
    fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key + "\n")
    return key, True


def guard_metrics(headers: Mapping[str, str], cfg: AuthConfig, protect: bool,
                  environ: Mapping[str, str] = os.environ) -> None:
    """``policy.protect_metrics``: /metrics (tenant labels, breaker states) needs the admin key."""
    if protect:
        require_admin(headers, cfg, environ)


def readyz_view(body: dict, headers: Mapping[str, str], cfg: AuthConfig, protect: bool,
                environ: Mapping[str, str] = os.environ) -> dict:
    """``policy.protect_readyz_detail``: without the admin key /readyz says only ready or not."""
    if protect and not admin_key_matches(bearer_token(headers), admin_key(cfg, environ)):
        return {"status": body.get("status")}
    return body
