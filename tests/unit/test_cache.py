"""ResponseCache in memory: layers, scoping, bypass, TTL, LRU bounds, invalidation, stale lookups."""

import asyncio
import time

import numpy as np
import pytest

from app.caching.bypass import should_bypass
from app.caching.cache import ResponseCache
from app.caching.entries import CachedResponse
from app.caching.keys import CacheQuery, exact_key, scope_key
from app.caching.pair_features import hard_veto
from app.caching.settings import CacheConfig


def vec(seed: int, near: np.ndarray | None = None, noise: float = 0.05) -> np.ndarray:
    rng = np.random.default_rng(seed)
    v = rng.normal(size=384).astype(np.float32) if near is None else near + noise * rng.normal(size=384)
    return (v / np.linalg.norm(v)).astype(np.float32)


class AcceptAll:
    version, threshold = "test", 0.5

    def accept(self, *args, **kwargs) -> bool:
        return True


class RejectAll(AcceptAll):
    def accept(self, *args, **kwargs) -> bool:
        return False


def q(text: str, tenant: str = "t1", emb=None, model: str = "auto", system: str = "", max_tokens: int = 32, **kw):
    msgs = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": text}]
    return CacheQuery(tenant=tenant, model=model, system_prompt=system, messages=msgs,
                      sampling={"max_tokens": max_tokens, "temperature": 0.0, **kw}, embedding=emb)


def resp(text: str, finish: str = "stop", tokens: int = 5) -> CachedResponse:
    return CachedResponse(text, finish, 7, tokens, "tiny-small", time.time())


def run(coro):
    return asyncio.run(coro)


def make(verifier=None, **cfg) -> ResponseCache:
    return ResponseCache(CacheConfig(**cfg), verifier=verifier or AcceptAll())


def test_exact_hit_ignores_whitespace_and_respects_scope() -> None:
    cache = make(semantic_enabled=False)

    async def go():
        await cache.store_response(q("What is  Ray?"), resp("Ray is a framework."))
        hit = await cache.lookup(q(" What is Ray? "))
        assert hit is not None and hit.layer == "exact" and hit.response.text == "Ray is a framework."
        assert await cache.lookup(q("What is Ray?", tenant="t2")) is None
        assert await cache.lookup(q("What is Ray?", model="small")) is None
        assert await cache.lookup(q("What is Ray?", system="Answer in French.")) is None
        assert await cache.lookup(q("What is Ray?", seed=3)) is None

    run(go())


def test_keys_differ_by_answer_changing_params_only() -> None:
    assert exact_key(q("x")) != exact_key(q("x", top_p=0.5))
    assert scope_key(q("x", max_tokens=10)) == scope_key(q("x", max_tokens=20))


def test_max_tokens_fit() -> None:
    cache = make(semantic_enabled=False)

    async def go():
        await cache.store_response(q("a", max_tokens=8), resp("cut short", finish="length", tokens=8))
        assert await cache.lookup(q("a", max_tokens=64)) is None  # would have been longer
        assert (await cache.lookup(q("a", max_tokens=8))) is not None
        await cache.store_response(q("b", max_tokens=64), resp("complete", finish="stop", tokens=5))
        assert (await cache.lookup(q("b", max_tokens=16))) is not None  # fits
        assert await cache.lookup(q("b", max_tokens=3)) is None

    run(go())


def test_semantic_hit_needs_similarity_and_verifier() -> None:
    base = vec(1)
    near, far = vec(2, base, 0.02), vec(3)
    cache = make()

    async def go():
        await cache.store_response(q("How do I reset my password?", emb=base), resp("Click 'forgot'."))
        hit = await cache.lookup(q("How can I reset my password?", emb=near))
        assert hit is not None and hit.layer == "semantic" and hit.similarity > 0.9
        assert await cache.lookup(q("Something unrelated", emb=far)) is None
        assert await cache.lookup(q("How can I reset my password?", emb=near, tenant="t2")) is None
        rejecting = make(verifier=RejectAll())
        await rejecting.store_response(q("How do I reset my password?", emb=base), resp("x"))
        assert await rejecting.lookup(q("How can I reset my password?", emb=near)) is None
        assert rejecting.stats()["verifier_rejected"] == 1
        stale = await rejecting.stale_lookup(q("How can I reset my password?", emb=near), 0.6)
        assert stale is not None and stale.layer == "stale"
        # the floor is the caller's (fallback.stale_min_similarity): above the match's similarity, no answer
        above = stale.similarity + 1e-3
        assert await rejecting.stale_lookup(q("How can I reset my password?", emb=near), above) is None

    run(go())


def test_semantic_match_only_within_same_earlier_turns() -> None:
    base = vec(4)
    cache = make()
    first = q("And in French?", emb=base)
    first.messages = [{"role": "user", "content": "Say hello"}, {"role": "assistant", "content": "Hello"},
                      {"role": "user", "content": "And in French?"}]
    other = q("And in French?", emb=base)
    other.messages = [{"role": "user", "content": "Say goodbye"}, {"role": "assistant", "content": "Goodbye"},
                      {"role": "user", "content": "And in French?"}]

    async def go():
        await cache.store_response(first, resp("Bonjour"))
        assert await cache.lookup(other) is None

    run(go())


def test_ttl_expiry_and_lru_bounds() -> None:
    cache = make(semantic_enabled=False, max_entries=3)

    async def go():
        await cache.store_response(q("old"), resp("x"), ttl_seconds=1)
        cache.store.entries[next(iter(cache.store.entries))].expires_at = time.time() - 1
        assert await cache.lookup(q("old")) is None
        for i in range(5):
            await cache.store_response(q(f"k{i}"), resp(f"v{i}"))
        assert len(cache.store) == 3
        assert await cache.lookup(q("k0")) is None and (await cache.lookup(q("k4"))) is not None

    run(go())
    by_bytes = make(semantic_enabled=False, max_bytes=2000)
    for i in range(20):
        run(by_bytes.store_response(q(f"k{i}"), resp("y" * 300)))
    assert by_bytes.store.bytes <= 2000 and len(by_bytes.store) < 20


def test_invalidate_by_tenant_and_prefix_then_flush() -> None:
    cache = make(semantic_enabled=False)

    async def go():
        for tenant in ("a", "b"):
            for text in ("billing: refund", "billing: invoice", "shipping: where"):
                await cache.store_response(q(text, tenant=tenant), resp("r"))
        assert await cache.invalidate("a", "billing") == 2
        assert await cache.lookup(q("billing: refund", tenant="a")) is None
        assert (await cache.lookup(q("billing: refund", tenant="b"))) is not None
        assert cache.stats("a")["entries"] == 1
        assert await cache.flush() == 4 and len(cache.store) == 0

    run(go())


@pytest.mark.parametrize(
    ("kw", "reason"),
    [({"temperature": 1.2}, "temperature"), ({"has_tools": True}, "tools"), ({"cache_field": False},
     "request-cache-false"), ({"cache_control": "no-cache"}, "cache-control"), ({}, None),
     ({"temperature": None}, None), ({"temperature": 0.2}, None)],
)
def test_bypass_policy(kw: dict, reason: str | None) -> None:
    args = {"temperature": 0.0, "has_tools": False, "cache_field": None, "cache_control": None} | kw
    assert should_bypass(cfg=CacheConfig(), **args) == reason
    assert should_bypass(0.0, False, None, None, CacheConfig(enabled=False)) == "disabled"


def test_hard_vetoes() -> None:
    assert hard_veto("run 10 miles", "run 100 miles") == "numbers"
    assert hard_veto("what is 18 minus 3", "what is 3 minus 18") == "numbers"  # same numbers, swapped
    assert hard_veto("request 3 round 18", "request 18 round 3") == "numbers"
    assert hard_veto("ban of 500 and 1000 notes", "why ban the 1000 and 500 notes") is None  # reworded: order free
    assert hard_veto("Is it safe?", "Is it not safe?") == "negation"
    assert hard_veto("Is the store open on Sundays?", "Is the store closed on Sundays?") == "antonym"
    assert hard_veto("How do I reset my password?", "How can I reset my password?") is None
