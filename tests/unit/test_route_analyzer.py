"""In-process routing (app/routing/analyzer.py): batching on one worker thread, memo, same verdicts."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from app.config import RouterConfig
from app.routing.analyzer import BatchingEmbedder, RouteAnalyzer


class Encoder:
    """Deterministic vectors; records every batch and the thread it ran on."""

    def __init__(self, delay: float = 0.0, fail: bool = False) -> None:
        self.batches: list[list[str]] = []
        self.threads: set[str] = set()
        self.delay, self.fail = delay, fail

    def __call__(self, texts: list[str]) -> np.ndarray:
        self.batches.append(list(texts))
        self.threads.add(threading.current_thread().name)
        time.sleep(self.delay)
        if self.fail:
            raise RuntimeError("encoder down")
        out = np.stack([np.random.default_rng(abs(hash(t)) % 2**32).standard_normal(384) for t in texts])
        return (out / np.linalg.norm(out, axis=1, keepdims=True)).astype(np.float32)


def test_concurrent_texts_are_batched_off_the_event_loop_and_remembered():
    enc = Encoder(delay=0.05)
    emb = BatchingEmbedder(enc, max_batch=32)

    async def main():
        first = asyncio.create_task(emb.embed("warm"))  # starts a batch of one at once
        await asyncio.sleep(0.01)
        rest = await asyncio.gather(*(emb.embed(f"text {i}") for i in range(10)), emb.embed("text 3"))
        return await first, rest

    _first, rest = asyncio.run(main())
    assert enc.batches[0] == ["warm"]
    assert sorted(enc.batches[1]) == sorted(f"text {i}" for i in range(10))  # one batch, duplicates folded
    assert len(enc.batches) == 2 and enc.threads == {"llmgw-embed_0"}
    np.testing.assert_array_equal(rest[3], rest[10])
    assert asyncio.run(emb.embed("text 5")) is rest[5]  # memo: no third batch
    assert len(enc.batches) == 2
    # the sync path (injection guard, on a worker thread) shares the memo and encodes only what is new
    out = emb.embed_sync(["text 1", "brand new"])
    assert enc.batches[-1] == ["brand new"] and out.shape == (2, 384)
    np.testing.assert_array_equal(out[0], rest[1])


def test_a_text_encoded_by_two_threads_at_once_is_encoded_once():
    # the injection guard (embed_sync on a worker thread) and the route (embed on the embedding thread) embed
    # the same prompt side by side: one forward pass, both get the same vector
    enc = Encoder(delay=0.2)
    emb = BatchingEmbedder(enc)

    async def main():
        guard = asyncio.create_task(asyncio.to_thread(emb.embed_sync, ["same prompt", "only the guard's"]))
        await asyncio.sleep(0.05)  # the guard's encode is running
        return await emb.embed("same prompt"), await guard

    route_vec, guard_vecs = asyncio.run(main())
    assert sorted(t for b in enc.batches for t in b) == ["only the guard's", "same prompt"]
    np.testing.assert_array_equal(route_vec, guard_vecs[0])


def test_a_failed_encode_fails_its_waiters_too_and_is_retried_later():
    enc = Encoder(delay=0.2, fail=True)
    emb = BatchingEmbedder(enc)

    async def main():
        guard = asyncio.create_task(asyncio.to_thread(emb.embed_sync, ["prompt"]))
        await asyncio.sleep(0.05)
        route = asyncio.create_task(emb.embed("prompt"))
        return await asyncio.gather(guard, route, return_exceptions=True)

    results = asyncio.run(main())
    assert all(isinstance(r, RuntimeError) for r in results) and len(enc.batches) == 1
    enc.fail = False
    assert emb.embed_sync(["prompt"]).shape == (1, 384) and len(enc.batches) == 2  # nothing stuck in flight


def test_max_batch_is_respected():
    enc = Encoder(delay=0.02)
    emb = BatchingEmbedder(enc, max_batch=4)

    async def main():
        await asyncio.gather(*(emb.embed(f"t{i}") for i in range(10)))

    asyncio.run(main())
    assert max(len(b) for b in enc.batches) <= 4 and sum(len(b) for b in enc.batches) == 10


def test_encoder_failure_is_an_embedding_of_none_and_counted():
    analyzer = RouteAnalyzer(RouterConfig(), BatchingEmbedder(Encoder(fail=True)))
    decision = asyncio.run(analyzer.analyze("hello there", classify=False))
    assert decision.embedding is None and analyzer.counters["embed_errors"] == 1
    with pytest.raises(RuntimeError):
        asyncio.run(analyzer.embedder.embed("again"))


def test_verdicts_equal_the_rule_the_router_deployment_applies():
    from app.route_decision import decide_route
    from app.routing.classifier import RouterClassifier

    cfg = RouterConfig()
    clf = RouterClassifier.load(cfg.artifact)
    enc = Encoder()
    analyzer = RouteAnalyzer(cfg, BatchingEmbedder(enc), clf)
    for text in ("hi", "Prove that there are infinitely many primes and discuss the proof's history in detail."):
        got = asyncio.run(analyzer.analyze(text, classify=True))
        want = decide_route(clf, text, enc([text])[0], cfg, None, 1)
        assert (got.pool, got.reason) == (want.pool, want.reason)
        assert got.score == pytest.approx(want.score)
