"""`llmgw cache eval`: precision and duplicate hit rate of each cache setting on held-out QQP pairs,
plus the hand-written look-alikes and GPTCache's paraphrases."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from app.caching.pair_features import hard_veto
from app.caching.train_verifier import (
    PARAPHRASE_FILE,
    QQP_FILE,
    Pairs,
    load_pairs,
    load_views,
    precision_hit_rate,
    split,
)


@dataclass
class SettingResult:
    name: str
    precision: float
    hit_rate: float
    hits: int


def verifier_proba(verifier, p: Pairs, views: dict | None = None) -> np.ndarray:
    """P(same) for each pair as the cache would see it (query = b, cached = a), vetoes applied."""
    if hasattr(verifier, "proba_many"):
        proba = verifier.proba_many(p.b, p.a)
    else:
        proba = verifier.proba_pairs(p.b, p.a, p.eb, p.ea, views=views)
    vetoed = np.array([hard_veto(b, a) is not None for a, b in zip(p.a, p.b, strict=True)])
    proba[vetoed] = 0.0
    return proba


def single_pair_ms(verifier, p: Pairs, n: int = 200) -> list[float]:
    """p50 / p99 ms of one verification as the cache actor runs it: one pair, texts never seen before."""
    import torch

    from app.embedding import embed_threads

    torch.set_num_threads(embed_threads())
    for i in range(len(p.a) - 100, len(p.a)):  # loads the model and warms the kernels, as a running actor is
        verifier.proba(p.b[i], p.a[i], p.eb[i], p.ea[i])
    times = []
    for i in range(min(n, len(p.a) - 100)):
        t0 = time.perf_counter()
        verifier.proba(p.b[i], p.a[i], p.eb[i], p.ea[i])
        times.append(time.perf_counter() - t0)
    return [float(np.percentile(times, 50)) * 1e3, float(np.percentile(times, 99)) * 1e3]


def evaluate_settings(verifier, gate: float, threshold: float, seed: int = 0) -> dict:
    qqp = load_pairs(QQP_FILE)
    _, _, test = split(len(qqp.same), seed)
    p = qqp.subset(test)
    ce = hasattr(verifier, "proba_many")
    proba = verifier_proba(verifier, p, None if ce else load_views(QQP_FILE, qqp))
    per_pair_ms = single_pair_ms(verifier, p)
    sim = p.cosine
    rows = [SettingResult(f"cosine >= {g:.2f} (no verifier)", *precision_hit_rate(sim >= g, p.same))
            for g in (0.80, 0.85, 0.90, 0.95, 0.97)]
    for vt in sorted({0.5, 0.7, 0.8, 0.9, threshold}):
        name = f"cosine >= {gate:.2f} + verifier >= {vt:.2f}" + ("  <- default" if vt == threshold else "")
        rows.append(SettingResult(name, *precision_hit_rate((sim >= gate) & (proba >= vt), p.same)))
    para = load_pairs(PARAPHRASE_FILE)
    views = None if ce else load_views(PARAPHRASE_FILE, para)
    para_hit = (para.cosine >= gate) & (verifier_proba(verifier, para, views) >= threshold)
    return {"rows": rows, "test_pairs": len(test), "verifier_ms_per_pair": per_pair_ms,
            "paraphrase_hit_rate": float(para_hit.mean())}


def lookalike_results(verifier, gate: float, threshold: float) -> dict:
    from app.caching.lookalikes import NEGATIVES, POSITIVES
    from app.embedding import get_embedder

    emb = get_embedder()
    out = {}
    for name, pairs in (("negatives", NEGATIVES), ("positives", POSITIVES)):
        ea, eb = emb.encode([a for a, _ in pairs]), emb.encode([b for _, b in pairs])
        served = [
            float(np.dot(x, y)) >= gate and verifier.accept(b, a, y, x, threshold)
            for (a, b), x, y in zip(pairs, ea, eb, strict=True)
        ]
        cos_only = [float(np.dot(x, y)) >= 0.90 for x, y in zip(ea, eb, strict=True)]
        out[name] = {"pairs": len(pairs), "served": sum(served), "served_by_cosine_0.90": sum(cos_only),
                     "served_pairs": [p for p, s in zip(pairs, served, strict=True) if s]}
    return out
