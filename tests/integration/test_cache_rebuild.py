"""The cache serves while it rebuilds from Redis (real Redis, DB 9, unique prefix; a private
redis-server for the Redis-down case)."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import time
import uuid

import pytest
import redis

from app.caching.entries import Entry
from app.caching.keys import context_key, exact_key, normalize, scope_key
from tests.integration.test_cache_redis import REDIS_URL, cache_for, prefix, resp  # noqa: F401 (fixture)
from tests.unit.test_cache import q, vec

N = 3000  # six SCAN pages of 500


def seed(client: redis.Redis, key_prefix: str, n: int, tenant: str = "acme", start: int = 0) -> None:
    """Write ``n`` entries straight into Redis, as a previous cache replica would have left them."""
    pipe = client.pipeline(transaction=False)
    for i in range(start, start + n):
        query = q(f"question number {i}", tenant=tenant, emb=vec(i))
        entry = Entry(id=i + 1, tenant=tenant, scope=scope_key(query), context=context_key(query),
                      exact=exact_key(query), question=normalize(f"question number {i}"), embedding=vec(i),
                      response=resp(f"answer {i}"), max_tokens=32, expires_at=time.time() + 600)
        pipe.hset(f"{key_prefix}:e:{entry.id}", mapping=entry.to_redis())
        pipe.expire(f"{key_prefix}:e:{entry.id}", 600)
    pipe.execute()


def test_lookups_stores_and_invalidations_go_on_during_a_rebuild(prefix: str) -> None:  # noqa: F811
    client = redis.Redis.from_url(REDIS_URL)
    seed(client, prefix, N)
    seed(client, prefix, 500, tenant="globex", start=N)

    async def go():
        cache = cache_for(prefix)
        task = cache.start_rebuild()
        assert cache.start_rebuild() is task  # one rebuild per replica
        while cache.rebuild_status["loaded"] == 0:
            await asyncio.sleep(0)
        assert cache.rebuild_status["state"] == "running"
        # mid-rebuild: answers at once, from what is loaded so far
        loaded = [e.question for e in cache.store.entries.values()]
        assert 0 < len(loaded) < N + 500
        hit = await cache.lookup(q(loaded[0], tenant="acme")) or await cache.lookup(q(loaded[0], tenant="globex"))
        assert hit is not None and hit.layer == "exact"
        await cache.store_response(q("stored during the rebuild", tenant="acme"), resp("fresh"))
        assert await cache.invalidate("globex") >= 0  # some globex entries are still only in Redis
        await task
        assert cache.rebuild_status["state"] == "done"
        # every acme entry is back (semantic layer too), no globex entry survived, the fresh one kept
        assert sum(e.tenant == "acme" for e in cache.store.entries.values()) == N + 1
        assert not any(e.tenant == "globex" for e in cache.store.entries.values())
        semantic = await cache.lookup(q("a paraphrase of question 7", tenant="acme", emb=vec(7, vec(7), 0.01)))
        assert semantic is not None and semantic.response.text == "answer 7"
        assert (await cache.lookup(q("stored during the rebuild", tenant="acme"))).response.text == "fresh"
        globex_left = [k for k in client.scan_iter(match=f"{prefix}:e:*", count=1000)
                       if N < int(k.rsplit(b":", 1)[1]) <= N + 500]
        assert globex_left == []  # invalidated in Redis too, even those loaded after the invalidation
        await cache.redis.close()

    asyncio.run(go())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server")
def test_rebuild_waits_for_redis_without_holding_lookups() -> None:
    port = _free_port()
    url = f"redis://127.0.0.1:{port}/0"
    key_prefix = f"llmgw-test:{uuid.uuid4().hex[:8]}"

    async def go():
        cache = cache_for(key_prefix, url=url)  # nothing listens there yet
        cache.start_rebuild()
        await asyncio.sleep(0.3)
        assert cache.rebuild_status["state"] == "retrying"
        t0 = time.perf_counter()
        assert await cache.lookup(q("question number 1")) is None  # a miss, at once
        assert time.perf_counter() - t0 < 0.1
        server = subprocess.Popen(["redis-server", "--port", str(port), "--save", "", "--appendonly", "no"],
                                  stdout=subprocess.DEVNULL)
        try:
            client = redis.Redis(port=port)
            for _ in range(100):
                try:
                    client.ping()
                    break
                except redis.ConnectionError:
                    await asyncio.sleep(0.05)
            seed(client, key_prefix, 10, tenant="t1")
            await asyncio.wait_for(cache._rebuild_task, 10)
            assert cache.rebuild_status["state"] == "done" and len(cache.store) == 10
            assert (await cache.lookup(q("question number 1"))).response.text == "answer 1"
            await cache.redis.close()
        finally:
            server.terminate()
            server.wait(5)

    asyncio.run(go())
