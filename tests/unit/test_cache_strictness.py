"""Cache operating points (strict / balanced), the one-slot look-alike veto, and our paraphrase sets."""

import asyncio
import json

import numpy as np
import pytest

from app.caching.cache import ResponseCache
from app.caching.entries import CachedResponse
from app.caching.keys import CacheQuery
from app.caching.lookalikes import NEGATIVES, POSITIVES
from app.caching.quality import EVERYDAY_CALIBRATION, EVERYDAY_EVAL
from app.caching.settings import CacheConfig
from app.caching.strictness import operating_point


def unit(seed: int, near: np.ndarray | None = None, noise: float = 0.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    v = rng.normal(size=384) if near is None else near + noise * rng.normal(size=384)
    return (v / np.linalg.norm(v)).astype(np.float32)


class FixedProba:
    """A verifier whose P(same) is a fixed 0.70 for every pair (real threshold comparison, no vetoes)."""

    version, threshold = "fixed", 0.855

    def __init__(self) -> None:
        self.calls: list[tuple[float | None, bool]] = []

    def accept_many(self, query, cached, eq, ec, threshold=None, slot_veto=False) -> list[bool]:
        self.calls.append((threshold, slot_veto))
        limit = self.threshold if threshold is None else threshold
        return [limit <= 0.70 for _ in cached]


def test_balanced_lowers_gate_and_threshold_and_adds_the_slot_veto() -> None:
    cfg = CacheConfig()
    strict = operating_point(cfg, "strict", artifact_threshold=0.855)
    balanced = operating_point(cfg, "balanced", artifact_threshold=0.855)
    assert strict.gate == cfg.similarity_threshold and strict.threshold == 0.855 and not strict.slot_veto
    assert balanced.gate < strict.gate and balanced.threshold < strict.threshold and balanced.slot_veto
    # monotone whatever the config says: balanced never asks for more than strict
    odd = CacheConfig(similarity_threshold=0.6, verifier_threshold=0.5, balanced_similarity_threshold=0.9,
                      balanced_verifier_threshold=0.95)
    b = operating_point(odd, "balanced", 0.855)
    assert (b.gate, b.threshold) == (0.6, 0.5)
    # unknown or missing level: the configured default
    assert operating_point(CacheConfig(strictness="balanced"), None, 0.855) == balanced
    assert operating_point(cfg, "bogus", 0.855) == strict


@pytest.mark.parametrize(("strictness", "served"), [("strict", False), ("balanced", True), (None, False)])
def test_the_knob_changes_what_the_cache_serves(strictness: str | None, served: bool) -> None:
    verifier = FixedProba()
    cache = ResponseCache(CacheConfig(), verifier=verifier)
    base = unit(1)
    near = unit(2, base, noise=0.045)  # cosine ~0.77: under the strict gate 0.80, over the balanced one
    assert 0.72 < float(base @ near) < 0.80

    def query(text: str, emb: np.ndarray) -> CacheQuery:
        return CacheQuery(tenant="t", model="auto", messages=[{"role": "user", "content": text}],
                          sampling={"max_tokens": 16, "temperature": 0.0}, embedding=emb, strictness=strictness)

    async def run():
        await cache.store_response(query("How do I reset my password?", base),
                                   CachedResponse("Use the link.", "stop", 5, 4, "m", 0.0))
        return await cache.lookup(query("What's the way to change my password?", near))

    hit = asyncio.run(run())
    assert (hit is not None) is served
    if served:
        assert verifier.calls[-1] == (CacheConfig().balanced_verifier_threshold, True)


def test_one_slot_edits_are_look_alikes_rewordings_are_not() -> None:
    from app.caching.slots import one_slot_edit
    from app.caching.token_features import encode_tokens

    pairs = {
        ("How do I reset my password?", "How do I reset my username?"): True,
        ("How do I tie a tie?", "How do I tie a bow tie?"): True,
        ("Can dogs eat grapes?", "Can cats eat grapes?"): True,
        ("How do I reset my password?", "How can I reset my password?"): False,  # function words only
        ("How do I reset my password?", "What's the way to change my password?"): False,  # two edits
        ("Is the store open on Sundays?", "Is the store open on Sunday?"): False,  # same meaning in context
    }
    texts = sorted({t for p in pairs for t in p})
    views = dict(zip(texts, encode_tokens(texts), strict=True))
    for (a, b), expected in pairs.items():
        assert one_slot_edit(views[b], views[a]) is expected, (a, b)


def _pairs(path) -> list[tuple[str, str, bool]]:
    return [(r["a"], r["b"], r["same"]) for r in map(json.loads, path.read_text().splitlines())]


def test_everyday_paraphrase_sets_are_disjoint_and_balanced() -> None:
    ev, cal = _pairs(EVERYDAY_EVAL), _pairs(EVERYDAY_CALIBRATION)
    norm = lambda t: " ".join(t.lower().split())  # noqa: E731
    ev_texts = {norm(t) for a, b, _ in ev for t in (a, b)}
    choose_texts = {norm(t) for a, b, _ in cal for t in (a, b)} | {norm(t) for p in NEGATIVES + POSITIVES for t in p}
    assert not ev_texts & choose_texts  # the reported set never met a threshold choice
    for rows in (ev, cal):
        assert sum(s for *_, s in rows) == sum(not s for *_, s in rows) >= 40
        assert all(a != b for a, b, _ in rows)


def test_reordered_words_and_other_times_are_look_alikes() -> None:
    from app.caching.slots import reordered, time_mismatch

    assert reordered("How do I convert Fahrenheit to Celsius?", "How do I convert Celsius to Fahrenheit?")
    assert not reordered("How do I convert Celsius to Fahrenheit?", "How can I convert Celsius to Fahrenheit?")
    assert reordered("Does a dog chase a cat?", "Does a cat chase a dog?")
    # a word moved next to the one it modifies keeps the meaning
    assert not reordered("high volume", "volume high")
    assert not reordered("location of the ISS", "what is the ISS location")
    assert not reordered("volume level to high", "volume to high level")
    assert time_mismatch("How do I book a table for tomorrow night?", "How do I book a table for tonight?")
    assert time_mismatch("Is the museum open on Mondays?", "Is the museum open on Sundays?")
    assert not time_mismatch("Is the shop open on Sunday?", "Is the store open on Sundays?")
