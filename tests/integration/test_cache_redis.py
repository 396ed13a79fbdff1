"""ResponseCache against the real Redis on 127.0.0.1:6379 (own DB number + unique key prefix)."""

import asyncio
import time
import uuid

import pytest
import redis

from app.caching.cache import ResponseCache
from app.caching.entries import CachedResponse
from app.caching.settings import CacheConfig
from tests.unit.test_cache import AcceptAll, q, vec

REDIS_URL = "redis://127.0.0.1:6379/9"
DEAD_URL = "redis://127.0.0.1:6399/9"  # nothing listens here


@pytest.fixture()
def prefix():
    try:
        client = redis.Redis.from_url(REDIS_URL, socket_timeout=1)
        client.ping()
    except redis.RedisError:
        pytest.skip("no Redis on 127.0.0.1:6379")
    name = f"llmgw-test:{uuid.uuid4().hex[:8]}"
    yield name
    keys = list(client.scan_iter(match=f"{name}:*"))
    if keys:
        client.delete(*keys)


def cache_for(prefix: str, url: str = REDIS_URL, **kw) -> ResponseCache:
    cfg = CacheConfig(redis_url=url, key_prefix=prefix, redis_retry_s=0.2, **kw)
    return ResponseCache(cfg, verifier=AcceptAll())


def resp(text: str) -> CachedResponse:
    return CachedResponse(text, "stop", 5, 3, "tiny-small", time.time())


def test_restart_rebuilds_index_from_redis(prefix: str) -> None:
    base = vec(10)

    async def go():
        first = cache_for(prefix)
        await first.store_response(q("What is Ray Serve?", emb=base), resp("A serving library."))
        await first.store_response(q("short lived"), resp("gone soon"), ttl_seconds=1)
        await first.redis.close()
        await asyncio.sleep(1.1)  # the short-lived entry expires in Redis too
        second = cache_for(prefix)  # a restarted actor: empty memory
        assert await second.lookup(q("What is Ray Serve?")) is None
        assert await second.rebuild() == 1
        exact = await second.lookup(q("What is Ray Serve?"))
        semantic = await second.lookup(q("Tell me what Ray Serve is", emb=vec(11, base, 0.02)))
        assert exact.layer == "exact" and exact.response.text == "A serving library."
        assert semantic is not None and semantic.layer == "semantic"
        await second.redis.close()

    asyncio.run(go())


def test_vectors_of_another_embedding_runtime_are_served_exactly_but_never_by_similarity(
        prefix: str, monkeypatch: pytest.MonkeyPatch) -> None:
    base = vec(12)

    async def go():
        first = cache_for(prefix)  # full-precision vectors (the default backend)
        assert first.embedding_kind == "minilm-fp32"
        await first.store_response(q("What is Ray Serve?", emb=base), resp("A serving library."))
        await first.redis.close()
        monkeypatch.setenv("LLMGW_EMBED_BACKEND", "onnx-int8")  # the cache restarts on int8 vectors
        second = cache_for(prefix)
        assert second.embedding_kind == "minilm-int8"
        assert await second.rebuild() == 1
        exact = await second.lookup(q("What is Ray Serve?"))
        near = await second.lookup(q("Tell me what Ray Serve is", emb=vec(13, base, 0.02)))
        assert exact is not None and exact.layer == "exact" and near is None
        await second.store_response(q("What is Ray Data?", emb=vec(14)), resp("A data library."))
        await second.redis.close()
        third = cache_for(prefix)  # same kind again: its own entries come back into the index
        assert await third.rebuild() == 2
        again = await third.lookup(q("Tell me what Ray Data is", emb=vec(15, vec(14), 0.02)))
        assert again is not None and again.layer == "semantic"
        await third.redis.close()

    asyncio.run(go())


def test_invalidate_and_eviction_delete_from_redis(prefix: str) -> None:
    client = redis.Redis.from_url(REDIS_URL)

    async def go():
        cache = cache_for(prefix, max_entries=2)
        for i in range(3):
            await cache.store_response(q(f"k{i}", tenant="acme"), resp(f"v{i}"))
        assert len(list(client.scan_iter(match=f"{prefix}:e:*"))) == 2  # evicted one removed
        assert await cache.invalidate("acme") == 2
        assert list(client.scan_iter(match=f"{prefix}:e:*")) == []
        await cache.redis.close()

    asyncio.run(go())


def test_redis_down_keeps_serving_and_resyncs_when_back(prefix: str) -> None:
    client = redis.Redis.from_url(REDIS_URL)

    async def go():
        cache = cache_for(prefix)
        await cache.store_response(q("before"), resp("one"))
        live_client = cache.redis.client
        import redis.asyncio as aioredis

        # Redis "goes down": point the cache at a port where nothing listens.
        cache.redis.client = aioredis.Redis.from_url(DEAD_URL, socket_timeout=0.1, socket_connect_timeout=0.1)
        t0 = time.perf_counter()
        await cache.store_response(q("during"), resp("two"))
        assert time.perf_counter() - t0 < 1.0  # bounded by the short timeout
        assert (await cache.lookup(q("during"))).response.text == "two"  # still served from memory
        stats = cache.stats()
        assert stats["redis_errors"] >= 1 and stats["redis_up"] is False and stats["redis_pending"] == 1
        # Redis is back.
        await cache.redis.client.aclose()
        cache.redis.client = live_client
        await asyncio.sleep(0.25)
        await cache.store_response(q("after"), resp("three"))
        keys = list(client.scan_iter(match=f"{prefix}:e:*"))
        assert len(keys) == 3 and cache.stats()["redis_pending"] == 0 and cache.stats()["redis_up"]
        await cache.redis.close()

    asyncio.run(go())


def test_two_tenants_never_share_entries_in_redis_rebuild(prefix: str) -> None:
    base = vec(20)

    async def go():
        cache = cache_for(prefix)
        await cache.store_response(q("What is our refund policy?", tenant="acme", emb=base), resp("acme: 30 days"))
        await cache.redis.close()
        rebuilt = cache_for(prefix)
        await rebuilt.rebuild()
        assert await rebuilt.lookup(q("What is our refund policy?", tenant="globex", emb=base)) is None
        hit = await rebuilt.lookup(q("What is our refund policy?", tenant="acme", emb=base))
        assert hit.response.text == "acme: 30 days"
        await rebuilt.redis.close()

    asyncio.run(go())
