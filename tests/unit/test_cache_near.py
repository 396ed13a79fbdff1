"""The ingress' near cache (``cache.near_ttl_s``): a repeated exact prompt is answered without the cache hop,
for a bounded time, per tenant, never for "redact" tenants, and cleared by an invalidation through the replica."""

from __future__ import annotations

import asyncio

from app.caching.entries import CachedResponse, CacheHit
from app.observability import metrics
from tests.unit.test_pipeline import Cache, config, ctx_for, drain, make


class CountingCache(Cache):
    def __init__(self) -> None:
        super().__init__()
        self.lookups = 0

    async def lookup(self, query):
        self.lookups += 1
        return await super().lookup(query)


def chat(text: str = "what is the capital of france", tenant: str | None = None) -> dict:
    return {"model": "small", "messages": [{"role": "user", "content": text}], "temperature": 0}


def ctx(text: str = "what is the capital of france", tenant: str = "default"):
    c = ctx_for(chat(text))
    c.headers = {"x-llmgw-tenant": tenant}
    return c


def near_count() -> float:
    return metrics.CACHE.labels("near", "hit")._value.get()


async def settle_store(cache: Cache) -> None:
    for _ in range(50):
        if cache.entries:
            return
        await asyncio.sleep(0.01)


async def test_a_repeat_is_answered_from_the_replica_without_the_cache_hop() -> None:
    cache = CountingCache()
    pipe, pools, _ = make(cache=cache)
    await drain(pipe, ctx())
    await settle_store(cache)
    before, lookups = near_count(), cache.lookups
    c = ctx()
    assert await drain(pipe, c) == "w w w " and c.cache_status == "hit-exact" and c.cost_usd == 0.0
    assert cache.lookups == lookups and near_count() == before + 1 and len(pools.calls) == 1
    c = ctx(tenant="other")  # another tenant's identical prompt is not served from this tenant's near entry
    await drain(pipe, c)
    assert cache.lookups == lookups + 1 and c.tenant == "other"


async def test_it_expires_and_is_cleared_by_an_invalidation() -> None:
    cache = CountingCache()
    pipe, _, _ = make(cfg=config(cache={"near_ttl_s": 0.05}), cache=cache)
    await drain(pipe, ctx())
    await settle_store(cache)
    await asyncio.sleep(0.08)
    lookups = cache.lookups
    c = ctx()
    await drain(pipe, c)
    assert c.cache_status == "hit-exact" and cache.lookups == lookups + 1  # expired: asked the cache replica
    pipe.stage("cache").clear_near()
    await drain(pipe, ctx())
    assert cache.lookups == lookups + 2


async def test_a_hit_from_the_cache_replica_is_remembered() -> None:
    cache = CountingCache()
    stored = CachedResponse("stored elsewhere", "stop", 5, 2, "tiny-small", 0.0)
    cache.entries["what is the capital of france"] = stored  # written by another ingress replica
    pipe, pools, _ = make(cache=cache)
    for _ in range(3):
        c = ctx()
        assert await drain(pipe, c) == "stored elsewhere"
    assert cache.lookups == 1 and len(pools.calls) <= 1  # (the first raced a speculative generation, dropped)


async def test_off_for_redact_tenants_and_when_the_ttl_is_zero() -> None:
    for cfg in (config(cache={"protection": {"default": "redact"}}), config(cache={"near_ttl_s": 0})):
        cache = CountingCache()
        pipe, _, _ = make(cfg=cfg, cache=cache)
        await drain(pipe, ctx())
        await settle_store(cache)
        c = ctx()
        await drain(pipe, c)
        assert c.cache_status == "hit-exact" and cache.lookups == 2


def test_the_layer_exists_on_the_hit_object() -> None:
    assert CacheHit(CachedResponse("x", "stop", 1, 1, "m", 0.0), "exact").layer == "exact"
