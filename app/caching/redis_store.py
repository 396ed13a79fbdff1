"""Redis as the durable copy of cache entries (the index lives in the actor's memory).

Every write is best-effort with a short timeout: when Redis is down the cache keeps serving from
memory, counts the failures, remembers what it could not write, and writes it once Redis is back.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Iterable

from app.caching.entries import Entry
from app.caching.protection import EntryProtector

logger = logging.getLogger(__name__)


class RedisDurability:
    def __init__(self, url: str, prefix: str, timeout_s: float = 0.2, retry_s: float = 2.0,
                 protector: EntryProtector | None = None) -> None:
        import redis.asyncio as aioredis

        self.protector = protector
        self.client = aioredis.Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s, retry_on_timeout=False
        )
        self.prefix = prefix
        self.url, self.timeout_s = url, timeout_s
        self._bulk = None  # the rebuild's client, made on first use
        self.retry_s = retry_s
        self.down_until = 0.0
        self.errors = 0
        self.pending_writes: dict[int, Entry] = {}  # written while Redis was down
        self.pending_deletes: set[int] = set()

    def key(self, entry_id: int) -> str:
        return f"{self.prefix}:e:{entry_id}"

    @property
    def up(self) -> bool:
        return time.monotonic() >= self.down_until

    def _failed(self, exc: BaseException) -> None:
        self.errors += 1
        self.down_until = time.monotonic() + self.retry_s
        logger.warning("redis unavailable (%s); cache continues in memory", type(exc).__name__)

    async def _run(self, op) -> bool:
        if not self.up:
            return False
        try:
            await op()
        except (TimeoutError, OSError, Exception) as exc:  # redis.ConnectionError/TimeoutError included
            self._failed(exc)
            return False
        if self.pending_writes or self.pending_deletes:
            await self._resync()
        return True

    async def _resync(self) -> None:
        writes, deletes = self.pending_writes, self.pending_deletes
        self.pending_writes, self.pending_deletes = {}, set()
        try:
            async with self.client.pipeline(transaction=False) as pipe:
                for entry in writes.values():
                    self._queue_write(pipe, entry)
                for entry_id in deletes:
                    pipe.delete(self.key(entry_id))
                await pipe.execute()
            logger.info("redis back: resynced %d writes, %d deletes", len(writes), len(deletes))
        except Exception as exc:
            self.pending_writes.update(writes)
            self.pending_deletes |= deletes
            self._failed(exc)

    def _queue_write(self, pipe, entry: Entry) -> None:
        ttl_ms = max(int((entry.expires_at - time.time()) * 1000), 1)
        fields = entry.to_redis()
        if self.protector is not None:
            fields = self.protector.seal(self.key(entry.id), entry.tenant, fields)
        pipe.hset(self.key(entry.id), mapping=fields)
        pipe.pexpire(self.key(entry.id), ttl_ms)

    async def write(self, entry: Entry) -> None:
        async def op() -> None:
            async with self.client.pipeline(transaction=False) as pipe:
                self._queue_write(pipe, entry)
                await pipe.execute()

        if not await self._run(op):
            self.pending_writes[entry.id] = entry
            self.pending_deletes.discard(entry.id)

    async def delete(self, entry_ids: Iterable[int]) -> None:
        ids = list(entry_ids)
        if not ids:
            return
        for entry_id in ids:
            self.pending_writes.pop(entry_id, None)

        async def op() -> None:
            await self.client.delete(*(self.key(i) for i in ids))

        if not await self._run(op):
            self.pending_deletes.update(ids)

    def _bulk_client(self):
        """A client of its own for the rebuild's bulk reads: a page of entries may take longer than the
        serving timeout on a loaded machine, and a slow rebuild must not mark Redis down for writes."""
        if self._bulk is None:
            import redis.asyncio as aioredis

            self._bulk = aioredis.Redis.from_url(self.url, socket_timeout=max(self.timeout_s, 5.0),
                                                 socket_connect_timeout=self.timeout_s, retry_on_timeout=False)
        return self._bulk

    async def iter_entries(self, batch: int = 500) -> AsyncIterator[list[Entry]]:
        """Every live entry under the prefix, one list per SCAN page (to rebuild the index after a
        restart without holding the caller: it may serve between pages). SCAN may repeat a key.
        Raises (after counting the error) when Redis fails midway."""
        client = self._bulk_client()
        try:
            keys: list[bytes] = []
            async for key in client.scan_iter(match=f"{self.prefix}:e:*", count=batch):
                keys.append(key)
                if len(keys) >= batch:
                    yield await self._read(client, keys)
                    keys = []
            if keys:
                yield await self._read(client, keys)
        except Exception:
            self.errors += 1
            raise

    async def _read(self, client, keys: list[bytes]) -> list[Entry]:
        async with client.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.hgetall(key)
            rows = await pipe.execute()
        entries: list[Entry] = []
        for key, fields in zip(keys, rows, strict=True):
            if fields:  # expired between SCAN and HGETALL
                try:
                    if self.protector is not None:
                        fields = self.protector.open(key, fields)
                    entries.append(Entry.from_redis(fields))
                except (KeyError, ValueError, TypeError) as exc:
                    logger.warning("skipping unreadable cache entry: %s", exc)
        return entries

    async def load_all(self, batch: int = 500) -> list[Entry]:
        """Every live entry under the prefix in one list (what Redis had until a failure)."""
        entries: list[Entry] = []
        try:
            async for page in self.iter_entries(batch):
                entries.extend(page)
        except Exception:
            pass  # counted by iter_entries
        return entries

    async def close(self) -> None:
        await self.client.aclose()
        if self._bulk is not None:
            await self._bulk.aclose()
