"""Key records in Redis: ``<p>:key:<id>`` (JSON), ``<p>:keyhash:<hash>`` -> id, ``<p>:keys`` (ids).

Updates are optimistic transactions (WATCH/MULTI), so concurrent admin calls never lose a change.
The previous hash stays indexed until the next rotate; ``KeyRecord.accepts`` ends its overlap exactly.
"""

from __future__ import annotations

import json

from redis.asyncio import Redis
from redis.exceptions import WatchError

from app.policy.key_store import Mutation
from app.policy.keys import KeyRecord


class RedisKeyStore:
    def __init__(self, redis: Redis, prefix: str) -> None:
        self.r = redis
        self.p = prefix

    def _rec(self, key_id: str) -> str:
        return f"{self.p}:key:{key_id}"

    def _idx(self, key_hash: str) -> str:
        return f"{self.p}:keyhash:{key_hash}"

    async def create(self, record: KeyRecord) -> None:
        async with self.r.pipeline(transaction=True) as pipe:
            pipe.set(self._rec(record.id), json.dumps(record.to_dict()))
            pipe.set(self._idx(record.key_hash), record.id)
            pipe.sadd(f"{self.p}:keys", record.id)
            await pipe.execute()

    async def get(self, key_id: str) -> KeyRecord | None:
        raw = await self.r.get(self._rec(key_id))
        return KeyRecord.from_dict(json.loads(raw)) if raw else None

    async def find(self, key_hash: str) -> KeyRecord | None:
        key_id = await self.r.get(self._idx(key_hash))
        return await self.get(key_id.decode() if isinstance(key_id, bytes) else key_id) if key_id else None

    async def list(self, tenant: str | None = None) -> list[KeyRecord]:
        ids = sorted(i.decode() if isinstance(i, bytes) else i for i in await self.r.smembers(f"{self.p}:keys"))
        if not ids:
            return []
        raws = await self.r.mget([self._rec(i) for i in ids])
        records = [KeyRecord.from_dict(json.loads(raw)) for raw in raws if raw]
        return [r for r in records if tenant is None or r.tenant == tenant]

    async def update(self, key_id: str, fn: Mutation) -> KeyRecord | None:
        rec_key = self._rec(key_id)
        async with self.r.pipeline(transaction=True) as pipe:
            while True:
                try:
                    await pipe.watch(rec_key)
                    raw = await pipe.get(rec_key)
                    if not raw:
                        return None
                    current = KeyRecord.from_dict(json.loads(raw))
                    new = fn(KeyRecord.from_dict(current.to_dict()))
                    if new is None:
                        await pipe.unwatch()
                        return current
                    pipe.multi()
                    pipe.set(rec_key, json.dumps(new.to_dict()))
                    for old in {current.key_hash, current.previous_hash} - {new.key_hash, new.previous_hash, None}:
                        pipe.delete(self._idx(old))
                    pipe.set(self._idx(new.key_hash), key_id)
                    if new.previous_hash:  # stays indexed until the next rotate; the record's check is exact
                        pipe.set(self._idx(new.previous_hash), key_id)
                    await pipe.execute()
                    return new
                except WatchError:
                    continue

    async def claim_replay(self, address: str, ttl_s: float) -> bool:
        return bool(await self.r.set(f"{self.p}:replay:{address}", b"", nx=True, px=max(1, int(ttl_s * 1000))))

    async def put_replay(self, address: str, blob: bytes, ttl_s: float) -> None:
        await self.r.set(f"{self.p}:replay:{address}", blob, px=max(1, int(ttl_s * 1000)))

    async def get_replay(self, address: str) -> bytes | None:
        raw = await self.r.get(f"{self.p}:replay:{address}")
        return raw or None
