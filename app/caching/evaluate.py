"""`llmgw cache eval`: precision and duplicate hit rate of each cache setting on held-out QQP pairs,
plus the hand-written look-alikes and GPTCache's paraphrases."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from app.caching.pair_features import hard_veto
from app.caching.train_verifier import PARAPHRASE_FILE, QQP_FILE, Pairs, load_pairs, precision_hit_rate, split


@dataclass
class SettingResult:
    name: str
    precision: float
    hit_rate: float
    hits: int


def verifier_proba(verifier, p: Pairs) -> np.ndarray:
    """P(same) for each pair as the cache would see it (query = b, cached = a), vetoes applied."""
    if hasattr(verifier, "proba_many"):
        proba = verifier.proba_many(p.b, p.a)
    else:
        from app.caching.train_verifier import features

        proba = verifier.proba_features(features(p))
    vetoed = np.array([hard_veto(b, a) is not None for a, b in zip(p.a, p.b, strict=True)])
    proba[vetoed] = 0.0
    return proba


def evaluate_settings(verifier, gate: float, threshold: float, seed: int = 0) -> dict:
    qqp = load_pairs(QQP_FILE)
    _, _, test = split(len(qqp.same), seed)
    p = qqp.subset(test)
    t0 = time.perf_counter()
    proba = verifier_proba(verifier, p)
    per_pair_ms = (time.perf_counter() - t0) / len(test) * 1000
    sim = p.cosine
    rows = [SettingResult(f"cosine >= {g:.2f} (no verifier)", *precision_hit_rate(sim >= g, p.same))
            for g in (0.80, 0.85, 0.90, 0.95, 0.97)]
    for vt in sorted({0.5, 0.7, 0.8, 0.9, threshold}):
        name = f"cosine >= {gate:.2f} + verifier >= {vt:.2f}" + ("  <- default" if vt == threshold else "")
        rows.append(SettingResult(name, *precision_hit_rate((sim >= gate) & (proba >= vt), p.same)))
    para = load_pairs(PARAPHRASE_FILE)
    para_hit = (para.cosine >= gate) & (verifier_proba(verifier, para) >= threshold)
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
