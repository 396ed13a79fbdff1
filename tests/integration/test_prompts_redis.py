"""Two registry instances on the real Redis (as two ingress replicas would be): one truth, changes seen
within 1 s."""

from __future__ import annotations

import asyncio

import pytest

from app.errors import ConflictError
from app.prompts.redis_store import RedisPromptStore
from app.prompts.registry import PromptRegistry
from app.prompts.settings import PromptsConfig
from tests.prompt_fixtures import REDIS_URL, redis_prefix, template


@pytest.fixture()
async def replicas():
    gen = redis_prefix()
    prefix = next(gen)
    cfg = PromptsConfig(key_prefix=prefix)
    a = PromptRegistry(RedisPromptStore.from_url(REDIS_URL, prefix), cfg)
    b = PromptRegistry(RedisPromptStore.from_url(REDIS_URL, prefix), cfg)
    yield a, b
    await a.store.aclose()
    await b.store.aclose()
    next(gen, None)


async def test_promote_and_rollback_seen_by_the_other_replica_within_1s(replicas) -> None:
    a, b = replicas
    for _ in range(2):
        await a.create("acme", "support", template())
    await a.promote("acme", "support", 1)
    assert (await b.resolve("acme", "support")).version == 1  # b caches the state now
    await a.promote("acme", "support", 2)
    await asyncio.sleep(1.0)
    assert (await b.resolve("acme", "support")).version == 2
    await b.rollback("acme", "support")  # and the other way round
    await asyncio.sleep(1.0)
    assert (await a.resolve("acme", "support")).version == 1


async def test_delete_on_one_replica_is_seen_and_labels_are_atomic(replicas) -> None:
    a, b = replicas
    await a.create("acme", "p", template())
    await a.create("acme", "p", template())
    assert (await b.resolve("acme", "p", version=1)).version == 1  # cached on b
    await a.delete_version("acme", "p", 1)
    await asyncio.sleep(1.0)
    with pytest.raises(Exception, match="Version 1"):
        await b.resolve("acme", "p", version=1)
    # concurrent label + delete of the same version: either the delete fails (409) or the label does (404)
    results = await asyncio.gather(a.set_label("acme", "p", "staging", 2), b.delete_version("acme", "p", 2),
                                   return_exceptions=True)
    labelled = not isinstance(results[0], Exception)
    deleted = not isinstance(results[1], Exception)
    assert labelled != deleted
    if labelled:
        assert isinstance(results[1], ConflictError)


async def test_experiment_start_and_stop_seen_by_the_other_replica_within_1s(replicas) -> None:
    from app.prompts.experiment_store import Experiments

    a, b = replicas
    xa, xb = Experiments(a), Experiments(b)
    await a.create("acme", "p", template(), labels=["production"])
    assert await xb.active("acme", "p") is None  # b caches "no experiment"
    await xa.start("acme", {"name": "ab", "prompt": "p", "variants": [{"name": "x", "weight": 1}]})
    await asyncio.sleep(1.0)
    running = await xb.active("acme", "p")
    assert running is not None and running.name == "ab"
    await xb.stop("acme", "ab")
    await asyncio.sleep(1.0)
    assert await xa.active("acme", "p") is None
