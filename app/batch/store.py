"""Files, batch records and async jobs in Redis, each owned by a tenant (another tenant's id -> 404).

File content is stored as a list of chunks (``chunk_bytes`` each) and expires with the record
(``retention_s``); output and error files of a batch are views over its results hash, read in line order.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

from app.batch.keys import Keys, new_id
from app.batch.queue import BatchQueue
from app.batch.records import decode
from app.batch.settings import BatchConfig
from app.batch.validation import FileCheck
from app.errors import NotFoundError, PayloadTooLargeError

READ_PAGE = 500  # result lines fetched per HMGET when streaming an output file


def connect(url: str) -> Any:
    import redis.asyncio as aioredis

    return aioredis.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=5, health_check_interval=30)


class FileUpload:
    """Chunks of one upload written to a temporary key; ``commit`` publishes them as a file."""

    def __init__(self, store: BatchStore, fid: str) -> None:
        self.store, self.fid = store, fid
        self.tmp = f"{store.keys.chunks(fid)}:tmp"
        self.size = 0
        self._buffer = bytearray()

    async def write(self, data: bytes) -> None:
        cfg = self.store.cfg
        self.size += len(data)
        if self.size > cfg.max_file_bytes:
            await self.abort()
            raise PayloadTooLargeError(f"The file is larger than the limit of {cfg.max_file_bytes} bytes.")
        self._buffer += data
        while len(self._buffer) >= cfg.chunk_bytes:
            await self._flush(cfg.chunk_bytes)

    async def _flush(self, n: int) -> None:
        piece, self._buffer = bytes(self._buffer[:n]), self._buffer[n:]
        async with self.store.redis.pipeline(transaction=False) as pipe:
            pipe.rpush(self.tmp, piece)
            pipe.expire(self.tmp, 3600)  # an abandoned upload disappears
            await pipe.execute()

    async def commit(self, tenant: str, filename: str, purpose: str, check: FileCheck | None) -> dict[str, str]:
        if self._buffer:
            await self._flush(len(self._buffer))
        s = self.store
        now = int(time.time())
        meta = {"id": self.fid, "tenant": tenant, "filename": filename, "purpose": purpose, "bytes": str(self.size),
                "created_at": str(now), "expires_at": str(now + s.cfg.retention_s), "status": "processed",
                "source": "chunks", "check": json.dumps(check.to_dict()) if check else ""}
        async with s.redis.pipeline(transaction=True) as pipe:
            if self.size:
                pipe.rename(self.tmp, s.keys.chunks(self.fid))
                pipe.expire(s.keys.chunks(self.fid), s.cfg.retention_s)
            pipe.hset(s.keys.file(self.fid), mapping=meta)
            pipe.expire(s.keys.file(self.fid), s.cfg.retention_s)
            pipe.zadd(s.keys.files(tenant), {self.fid: now})
            await pipe.execute()
        return meta

    async def abort(self) -> None:
        await self.store.redis.delete(self.tmp)


class BatchStore:
    def __init__(self, redis: Any, cfg: BatchConfig) -> None:
        self.redis = redis
        self.cfg = cfg
        self.keys = Keys(cfg.key_prefix)
        self.queue = BatchQueue(redis, self.keys)

    # ---- files --------------------------------------------------------------------------------
    def upload(self) -> FileUpload:
        return FileUpload(self, new_id("file"))

    async def add_view_file(self, tenant: str, bid: str, flag: str, count: int, fid: str, size: int = 0) -> str:
        """An output ("o") or error ("e") file of a batch: a view over its results, in line order."""
        now = int(time.time())
        meta = {"id": fid, "tenant": tenant, "filename": f"{bid}_{'output' if flag == 'o' else 'error'}.jsonl",
                "purpose": "batch_output", "bytes": str(size), "created_at": str(now),
                "expires_at": str(now + self.cfg.retention_s), "status": "processed", "source": f"batch:{bid}:{flag}",
                "lines": str(count)}
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(self.keys.file(fid), mapping=meta)
            pipe.expire(self.keys.file(fid), self.cfg.retention_s)
            pipe.zadd(self.keys.files(tenant), {fid: now})
            await pipe.execute()
        return fid

    async def file(self, tenant: str, fid: str) -> dict[str, str]:
        meta = decode(await self.redis.hgetall(self.keys.file(fid))) if fid else {}
        if not meta or meta.get("tenant") != tenant:
            raise NotFoundError(f"No such File object: {fid}", param="file_id")
        return meta

    async def files(self, tenant: str, limit: int, after: str | None, purpose: str | None) -> list[dict[str, str]]:
        ids = [i.decode() for i in await self.redis.zrevrange(self.keys.files(tenant), 0, -1)]
        if after in ids:
            ids = ids[ids.index(after) + 1:]
        out: list[dict[str, str]] = []
        for fid in ids:
            meta = decode(await self.redis.hgetall(self.keys.file(fid)))
            if not meta:
                await self.redis.zrem(self.keys.files(tenant), fid)  # expired
                continue
            if purpose is None or meta.get("purpose") == purpose:
                out.append(meta)
            if len(out) > limit:
                break
        return out

    async def delete_file(self, tenant: str, fid: str) -> None:
        await self.file(tenant, fid)
        await self.redis.delete(self.keys.file(fid), self.keys.chunks(fid))
        await self.redis.zrem(self.keys.files(tenant), fid)

    async def content(self, meta: dict[str, str]) -> AsyncIterator[bytes]:
        """The bytes of a file, chunk by chunk (bounded memory)."""
        source = meta.get("source", "chunks")
        if source == "chunks":
            key, i = self.keys.chunks(meta["id"]), 0
            while (chunk := await self.redis.lindex(key, i)) is not None:
                yield chunk
                i += 1
            return
        _, bid, flag = source.split(":")
        async for line in self.result_lines(bid, flag):
            yield line + b"\n"

    async def result_lines(self, bid: str, flag: str) -> AsyncIterator[bytes]:
        batch = decode(await self.redis.hgetall(self.keys.batch(bid)))
        last = int(batch.get("max_line") or 0)
        for start in range(1, last + 1, READ_PAGE):
            fields = list(range(start, min(start + READ_PAGE, last + 1)))
            for value in await self.redis.hmget(self.keys.results(bid), fields):
                if value is not None and value[:1].decode() == flag:
                    yield value[1:]

    # ---- batches ------------------------------------------------------------------------------
    async def batch(self, tenant: str, bid: str) -> dict[str, str]:
        h = decode(await self.redis.hgetall(self.keys.batch(bid))) if bid else {}
        if not h or h.get("tenant") != tenant:
            raise NotFoundError(f"No such Batch object: {bid}", param="batch_id")
        return h

    async def batch_any(self, bid: str) -> dict[str, str]:
        return decode(await self.redis.hgetall(self.keys.batch(bid)))

    async def batches(self, tenant: str, limit: int, after: str | None) -> list[dict[str, str]]:
        ids = [i.decode() for i in await self.redis.zrevrange(self.keys.batches(tenant), 0, -1)]
        if after in ids:
            ids = ids[ids.index(after) + 1:]
        out = []
        for bid in ids[: limit + 1]:
            h = decode(await self.redis.hgetall(self.keys.batch(bid)))
            if h:
                out.append(h)
        return out

    async def put_batch(self, h: dict[str, str], start: bool) -> None:
        """Store a new batch record; ``start``: queue its expansion (a ``start`` entry on the batch lane)."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(self.keys.batch(h["id"]), mapping=h)
            pipe.expire(self.keys.batch(h["id"]), self.cfg.retention_s)
            pipe.zadd(self.keys.batches(h["tenant"]), {h["id"]: int(h["created_at"])})
            if start:
                pipe.sadd(self.keys.active, h["id"])
                self.queue.enqueue_in(pipe, "batch", {"k": "start", "b": h["id"]})
            await pipe.execute()

    async def transition(self, bid: str, to: str, ts_field: str, sources: list[str],
                         now: int | None = None) -> bool:
        return bool(await self.queue.transition(keys=[self.keys.batch(bid)],
                                                args=[to, ts_field, now or int(time.time()), *sources]))

    # ---- async single requests ------------------------------------------------------------------
    async def put_job(self, h: dict[str, str]) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(self.keys.job(h["id"]), mapping=h)
            pipe.expire(self.keys.job(h["id"]), self.cfg.retention_s)
            self.queue.enqueue_in(pipe, "async", {"k": "job", "j": h["id"]})
            await pipe.execute()

    async def job(self, tenant: str, jid: str) -> dict[str, str]:
        h = decode(await self.redis.hgetall(self.keys.job(jid))) if jid else {}
        if not h or h.get("tenant") != tenant:
            raise NotFoundError(f"No such async request: {jid}", param="id")
        return h
