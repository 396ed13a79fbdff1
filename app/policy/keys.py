"""API keys: the ``sk-llmgw-`` format, hashing (the secret is never stored), the key record, model scopes."""

from __future__ import annotations

import dataclasses
import fnmatch
import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

KEY_PREFIX = "sk-llmgw-"
KEY_BYTES = 32  # >= 32 random bytes, urlsafe base64 (43 characters)
_KEY_RE = re.compile(r"^sk-llmgw-[A-Za-z0-9_-]{43,}$")
# Anything shaped like a gateway key, for scrubbing text (logs, errors) defensively.
KEY_PATTERN = re.compile(r"sk-llmgw-[A-Za-z0-9_-]{8,}")


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(KEY_BYTES)


def new_key_id() -> str:
    return "key_" + secrets.token_hex(8)


def looks_like_key(token: str) -> bool:
    return bool(_KEY_RE.match(token))


class KeyHasher:
    """HMAC-SHA256 with a server secret (a stolen store cannot be brute-forced offline), else plain SHA-256."""

    def __init__(self, secret: str | None) -> None:
        self._secret = secret.encode() if secret else None

    @property
    def keyed(self) -> bool:
        return self._secret is not None

    def __call__(self, key: str) -> str:
        if self._secret is None:
            return "sha256:" + hashlib.sha256(key.encode()).hexdigest()
        return "hmac:" + hmac.new(self._secret, key.encode(), hashlib.sha256).hexdigest()


def model_allowed(patterns: list[str], model: str) -> bool:
    """Deny by default: no patterns -> nothing; ``"*"`` -> everything; else names or globs."""
    return any(p == "*" or p == model or fnmatch.fnmatchcase(model, p) for p in patterns)


LIMIT_FIELDS = ("rpm", "tpm", "budget_daily_usd", "budget_monthly_usd")
MUTABLE_FIELDS = ("name", "models", *LIMIT_FIELDS, "expires_at")


@dataclass(slots=True)
class KeyRecord:
    """One API key. ``key_hash`` is the current secret's hash; after a rotate ``previous_hash`` stays valid
    until ``previous_valid_until`` (epoch seconds, exclusive)."""

    id: str
    tenant: str
    key_hash: str
    name: str = ""
    models: list[str] = field(default_factory=list)
    rpm: int | None = None
    tpm: int | None = None
    budget_daily_usd: float | None = None
    budget_monthly_usd: float | None = None
    expires_at: float | None = None
    created_at: float = field(default_factory=time.time)
    revoked_at: float | None = None
    previous_hash: str | None = None
    previous_valid_until: float | None = None
    rotated_at: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> KeyRecord:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def public(self) -> dict[str, Any]:
        """What the admin API shows: never the hash (nor, of course, the secret)."""
        data = self.to_dict()
        for name in ("key_hash", "previous_hash"):
            data.pop(name)
        data["status"] = self.status()
        return data

    def status(self, now: float | None = None) -> str:
        now = time.time() if now is None else now
        if self.revoked_at is not None and self.revoked_at <= now:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return "active"

    def accepts(self, key_hash: str, now: float) -> bool:
        """The hash opens this record now: current key, or the previous one inside its overlap."""
        if self.status(now) != "active":
            return False
        if hmac.compare_digest(key_hash, self.key_hash):
            return True
        return (self.previous_hash is not None and self.previous_valid_until is not None
                and now < self.previous_valid_until and hmac.compare_digest(key_hash, self.previous_hash))
