"""The int8 prefilter offline (``LLMGW_EMBED_BACKEND=onnx-int8-prefilter``): what searching the index with int8
vectors loses against the fp32 cache, and the search margin chosen on the choose sets.

In the gateway the ingress embeds in int8 (router, guard, index search at ``gate - prefilter_margin``); the cache
replica then embeds the query and each candidate again in fp32 (the verifier's own forward) and gates and verifies on
those, as the fp32 cache does. So a pair is served exactly when the fp32 cache serves it *and* its int8 cosine
reached ``gate - margin``: the prefilter can only lose hits, never add one. Each set's pairs are scored here with
both cosines (fp32 from the evaluation as shipped, int8 from the quantised model of the same weights).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace

import numpy as np

from app.caching.quality import ScoredPairs
from app.caching.strictness import OperatingPoint

MARGINS = (0.0, 0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.08)

Encode = Callable[[Sequence[str]], np.ndarray]


def int8_encoder() -> Encode:
    """The ingress's int8 sentence vectors, whatever this process's backend is."""
    from app.embedding import Embedder

    return Embedder(backend="onnx-int8").encode


def with_search(s: ScoredPairs, encode: Encode, margin: float) -> ScoredPairs:
    """``s`` as the prefilter serves it: each pair's int8 cosine attached, searched ``margin`` under the gate."""
    texts = sorted(set(s.a) | set(s.b))
    vectors = dict(zip(texts, encode(texts), strict=True))
    cos = np.array([float(np.dot(vectors[a], vectors[b])) for a, b in zip(s.a, s.b, strict=True)], dtype=np.float32)
    return replace(s, search=cos, margin=margin)


def losses(s: ScoredPairs, points: Mapping[str, OperatingPoint]) -> dict[str, dict[str, int]]:
    """Per level: pairs the fp32 cache serves (true / false) that the prefilter loses, and extra verifications
    (pairs the int8 search passes to the cache replica whose fp32 cosine is under the gate: a forward, no hit)."""
    assert s.search is not None
    out = {}
    for level, p in points.items():
        fp32 = replace(s, search=None).served(p.gate, p.threshold, p.slot_veto)
        pre = s.served(p.gate, p.threshold, p.slot_veto)
        lost = fp32 & ~pre
        searched = s.search >= p.gate - s.margin
        out[level] = {"lost_true": int((lost & s.same).sum()), "lost_false": int((lost & ~s.same).sum()),
                      "searched": int(searched.sum()), "gated_fp32": int((s.cosine >= p.gate).sum()),
                      "extra_forwards": int((searched & (s.cosine < p.gate)).sum())}
    return out


def choose_margin(choose: Mapping[str, ScoredPairs], points: Mapping[str, OperatingPoint], encode: Encode,
                  margins: Sequence[float] = MARGINS) -> tuple[float, dict[str, float]]:
    """The margin: the largest drop from fp32 to int8 cosine seen on any choose pair the fp32 gate of some level
    passes, rounded up to 0.01 (served-pair losses are too rare on these sets to choose by; they are reported).
    Returns (margin, {"max_drop", "p99_drop", "pairs", and "lost_true@m" for each margin tried})."""
    scored = [with_search(s, encode, 0.0) for s in choose.values()]
    low = min(p.gate for p in points.values())
    drops = np.concatenate([s.cosine[s.cosine >= low] - s.search[s.cosine >= low] for s in scored])
    info: dict[str, float] = {"pairs": float(len(drops)), "max_drop": float(drops.max(initial=0.0)),
                              "p99_drop": float(np.percentile(drops, 99)) if len(drops) else 0.0}
    for m in margins:
        info[f"lost_true@{m:.2f}"] = float(sum(v["lost_true"] for s in scored
                                               for v in losses(replace(s, margin=m), points).values()))
    return float(np.ceil(max(info["max_drop"], 0.0) * 100 - 1e-9) / 100), info
