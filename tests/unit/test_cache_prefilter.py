"""The int8 prefilter's second step in the cache replica (``onnx-int8-prefilter``): the index is searched with
the query's int8 vector ``prefilter_margin`` below the gate, then each candidate is gated and verified on fp32
vectors of both texts, so a hit is what the fp32 cache would serve (real MiniLM, no fake vectors for fp32)."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from app.caching.cache import ResponseCache
from app.caching.settings import CacheConfig
from tests.unit.test_cache import AcceptAll, q, resp

pytest.importorskip("onnxruntime")

STORED, PARAPHRASE = "How do I reset my password?", "How can I reset my password?"
OTHER = "What is the capital of Peru?"


class Recording(AcceptAll):
    """Accepts every pair, recording the vectors it was asked about."""

    def __init__(self) -> None:
        self.seen: list[tuple[np.ndarray, list[np.ndarray]]] = []

    def accept_many(self, query, cached, eq, ec, threshold=None, **kw) -> list[bool]:
        self.seen.append((np.asarray(eq), [np.asarray(c) for c in ec]))
        return [True] * len(cached)


@pytest.fixture(scope="module")
def fp32():
    from app.embedding import Embedder

    e = Embedder(backend="onnx")
    return dict(zip((STORED, PARAPHRASE, OTHER), e.encode([STORED, PARAPHRASE, OTHER]), strict=True))


def at_cosine(base: np.ndarray, cos: float, seed: int = 0) -> np.ndarray:
    """A unit vector at exactly ``cos`` to ``base`` (a stand-in int8 query vector)."""
    u = np.random.default_rng(seed).normal(size=base.shape)
    u -= np.dot(u, base) * base
    u /= np.linalg.norm(u)
    return (cos * base + np.sqrt(1 - cos * cos) * u).astype(np.float32)


def cache(refine: bool, verifier, monkeypatch, **cfg) -> ResponseCache:
    if refine:
        monkeypatch.setenv("LLMGW_EMBED_BACKEND", "onnx-int8-prefilter")
    c = ResponseCache(CacheConfig(**cfg), verifier=verifier)
    monkeypatch.delenv("LLMGW_EMBED_BACKEND", raising=False)
    assert c.refine is refine and c.embedding_kind == ("minilm-int8" if refine else "minilm-fp32")
    return c


def test_a_candidate_just_under_the_gate_in_int8_is_found_and_verified_on_fp32(fp32, monkeypatch) -> None:
    stored = fp32[STORED]
    real = float(np.dot(stored, fp32[PARAPHRASE]))
    assert real >= 0.80  # the fp32 cache serves this pair
    query = at_cosine(stored, 0.78)  # int8 drift put it under the 0.80 gate, inside the 0.07 margin

    async def go():
        plain, verifier = cache(False, AcceptAll(), monkeypatch), Recording()
        pre = cache(True, verifier, monkeypatch)
        for c in (plain, pre):
            await c.store_response(q(STORED, emb=stored), resp("Click 'forgot password'."))
        assert await plain.lookup(q(PARAPHRASE, emb=query)) is None  # no margin: the int8 miss stands
        hit = await pre.lookup(q(PARAPHRASE, emb=query))
        assert hit is not None and hit.layer == "semantic"
        assert hit.similarity == pytest.approx(real, abs=1e-4)  # the fp32 similarity, not the search's
        eq, ec = verifier.seen[-1]  # the verifier saw fp32 vectors of both texts, not the vectors it was sent
        assert float(np.abs(eq - fp32[PARAPHRASE]).max()) < 1e-4 and float(np.abs(ec[0] - stored).max()) < 1e-4
        wider = cache(True, Recording(), monkeypatch, prefilter_margin=0.0)
        await wider.store_response(q(STORED, emb=stored), resp("x"))
        assert await wider.lookup(q(PARAPHRASE, emb=query)) is None  # margin 0: searched at the gate itself

    asyncio.run(go())


def test_a_candidate_over_the_gate_in_int8_but_under_it_in_fp32_is_not_served(fp32, monkeypatch) -> None:
    stored = fp32[STORED]
    assert float(np.dot(stored, fp32[OTHER])) < 0.5
    query = at_cosine(stored, 0.95)  # the search says "close"; the texts are not

    async def go():
        verifier = Recording()
        pre = cache(True, verifier, monkeypatch)
        await pre.store_response(q(STORED, emb=stored), resp("x"))
        assert await pre.lookup(q(OTHER, emb=query)) is None
        assert verifier.seen == []  # refused by the fp32 gate before the verifier
        assert pre.stats()["miss"] == 1
        plain = cache(False, AcceptAll(), monkeypatch)
        await plain.store_response(q(STORED, emb=stored), resp("x"))
        assert await plain.lookup(q(OTHER, emb=query)) is not None  # what the fp32 gate is there to stop

    asyncio.run(go())


def scored(cosine, search, same, proba=None):
    from app.caching.quality import ScoredPairs

    n = len(cosine)
    texts = [f"q{i}" for i in range(n)]
    return ScoredPairs("t", texts, [t + "'" for t in texts], np.array(same), np.array(cosine, dtype=np.float32),
                       np.array(proba if proba is not None else [0.9] * n), np.zeros(n, dtype=bool),
                       search=np.array(search, dtype=np.float32))


def test_the_offline_prefilter_only_loses_what_the_int8_search_misses_and_counts_extra_forwards() -> None:
    from dataclasses import replace

    from app.caching.prefilter import losses
    from app.caching.strictness import OperatingPoint

    # fp32 serves pairs 0-2 (cosine >= 0.80, P >= 0.85); int8 puts pair 1 at 0.77 and pair 2 at 0.70
    s = scored([0.90, 0.81, 0.82, 0.75, 0.60], [0.91, 0.77, 0.70, 0.79, 0.50], [True, True, False, False, False])
    points = {"strict": OperatingPoint(0.80, 0.85)}
    at4 = losses(replace(s, margin=0.04), points)["strict"]
    assert at4 == {"lost_true": 0, "lost_false": 1, "searched": 3, "gated_fp32": 3, "extra_forwards": 1}
    at0 = losses(replace(s, margin=0.0), points)["strict"]
    assert at0["lost_true"] == 1 and at0["lost_false"] == 1 and at0["searched"] == 1
    served = replace(s, margin=0.04).served(0.80, 0.85)
    assert served.tolist() == [True, True, False, False, False]  # never more than fp32 serves


def test_cache_eval_refuses_to_score_the_prefilter_on_int8_vectors(monkeypatch) -> None:
    from typer.testing import CliRunner

    from app.caching.cli import cache_app

    monkeypatch.setenv("LLMGW_EMBED_BACKEND", "onnx-int8-prefilter")
    result = CliRunner().invoke(cache_app, ["eval"])
    assert result.exit_code != 0 and "--prefilter" in result.output
