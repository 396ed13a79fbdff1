"""Audit trail of admin changes (create / update / rotate / revoke / tenant put): who, what, when.

Records carry ids, field names and non-secret values only; never a key, its hash or an admin key.
Redis: one stream ``<p>:audit`` (XADD MAXLEN ~); memory: a bounded deque.
"""

from __future__ import annotations

import json
import time
from collections import deque
from typing import Any, Protocol

from redis.asyncio import Redis

_SECRET_FIELDS = {"key", "key_hash", "previous_hash", "secret", "admin_key"}


def audit_entry(actor: str, action: str, target: str, details: dict[str, Any] | None = None,
                now: float | None = None) -> dict[str, Any]:
    clean = {k: v for k, v in (details or {}).items() if k not in _SECRET_FIELDS}
    return {"ts": time.time() if now is None else now, "actor": actor, "action": action, "target": target,
            "details": clean}


class AuditLog(Protocol):
    async def record(self, entry: dict[str, Any]) -> None: ...
    async def recent(self, limit: int = 100) -> list[dict[str, Any]]: ...


class MemoryAuditLog:
    def __init__(self, max_len: int = 10_000) -> None:
        self._entries: deque[dict[str, Any]] = deque(maxlen=max_len)

    async def record(self, entry: dict[str, Any]) -> None:
        self._entries.append(entry)

    async def recent(self, limit: int = 100) -> list[dict[str, Any]]:
        return list(self._entries)[-limit:][::-1]


class RedisAuditLog:
    def __init__(self, redis: Redis, prefix: str, max_len: int = 100_000) -> None:
        self.r, self.key, self.max_len = redis, f"{prefix}:audit", max_len

    async def record(self, entry: dict[str, Any]) -> None:
        await self.r.xadd(self.key, {"entry": json.dumps(entry)}, maxlen=self.max_len, approximate=True)

    async def recent(self, limit: int = 100) -> list[dict[str, Any]]:
        rows = await self.r.xrevrange(self.key, count=limit)
        return [json.loads(fields[b"entry"]) for _, fields in rows]
