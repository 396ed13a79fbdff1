"""Train the semantic-hit verifier on Quora Question Pairs and choose the default operating point.

Split: 70% train / 10% validation (choose regularisation and thresholds) / 20% test (report only).
The default (similarity gate, verifier threshold) is the validation setting with the highest
duplicate hit rate among those with precision >= the target, that also rejects every hand-written
look-alike negative.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from app.caching.pair_features import HAND_FEATURES, hard_veto, pair_features
from app.mlp import rounded
from app.routing.train import REPO, shared_data_dir

QQP_FILE = "cache/qqp_pairs_dev.jsonl"
PARAPHRASE_FILE = "cache/gptcache_mock_paraphrases.jsonl"


@dataclass
class Pairs:
    a: list[str]
    b: list[str]
    same: np.ndarray
    ea: np.ndarray
    eb: np.ndarray
    sha256: str

    def subset(self, idx: np.ndarray) -> Pairs:
        return Pairs([self.a[i] for i in idx], [self.b[i] for i in idx], self.same[idx], self.ea[idx], self.eb[idx],
                     self.sha256)

    @property
    def cosine(self) -> np.ndarray:
        return np.sum(self.ea * self.eb, axis=1)


def load_pairs(name: str) -> Pairs:
    path = shared_data_dir() / name
    if not path.exists():
        raise FileNotFoundError(f"{path} not found; put ../shared/data beside the repo or set LLMGW_SHARED_DATA")
    raw = path.read_bytes()
    sha = hashlib.sha256(raw).hexdigest()
    rows = [json.loads(line) for line in raw.decode().splitlines() if line.strip()]
    texts = sorted({r["a"] for r in rows} | {r["b"] for r in rows})
    cache = REPO / ".cache" / "emb" / f"{Path(name).stem}-{sha[:16]}.npy"
    if cache.exists():
        vectors = np.load(cache)
    else:
        from app.embedding import get_embedder

        vectors = get_embedder().encode(texts, batch_size=64)
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.save(cache, vectors)
    pos = {t: i for i, t in enumerate(texts)}
    a = [r["a"] for r in rows]
    b = [r["b"] for r in rows]
    return Pairs(a, b, np.array([bool(r["same"]) for r in rows]), vectors[[pos[t] for t in a]],
                 vectors[[pos[t] for t in b]], sha)


def features(p: Pairs) -> np.ndarray:
    return np.stack([pair_features(a, b, ea, eb) for a, b, ea, eb in zip(p.a, p.b, p.ea, p.eb, strict=True)])


def split(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    idx = list(range(n))
    random.Random(seed).shuffle(idx)
    a, b = int(n * 0.7), int(n * 0.8)
    return np.array(sorted(idx[:a])), np.array(sorted(idx[a:b])), np.array(sorted(idx[b:]))


def precision_hit_rate(hit: np.ndarray, same: np.ndarray) -> tuple[float, float, int]:
    hits = int(hit.sum())
    precision = float(same[hit].mean()) if hits else 1.0
    return precision, float(hit[same].mean()) if same.any() else 0.0, hits


def fit_mlp(x: np.ndarray, y: np.ndarray, alpha: float, seed: int) -> dict:
    from sklearn.neural_network import MLPClassifier

    mean, scale = x.mean(axis=0), x.std(axis=0) + 1e-6
    model = MLPClassifier(hidden_layer_sizes=(64,), alpha=alpha, max_iter=300, early_stopping=True,
                          random_state=seed)
    model.fit((x - mean) / scale, y)
    layers = [{"weight": w.tolist(), "bias": b.tolist()} for w, b in zip(model.coefs_, model.intercepts_,
                                                                          strict=True)]
    return rounded({"mean": mean.tolist(), "scale": scale.tolist(), "layers": layers})


def choose_operating_point(sim: np.ndarray, proba: np.ndarray, same: np.ndarray, target: float,
                           lookalike_max_proba: float) -> tuple[float, float]:
    """Best (similarity gate, verifier threshold) by duplicate hit rate with precision >= target."""
    best = (0.0, 0.80, 0.99)
    for gate in (0.70, 0.75, 0.80, 0.85):
        for vt in np.arange(0.50, 0.99, 0.01):
            if vt <= lookalike_max_proba:
                continue
            prec, rate, hits = precision_hit_rate((sim >= gate) & (proba >= vt), same)
            if hits >= 50 and prec >= target and rate > best[0]:
                best = (rate, gate, float(vt))
    return best[1], round(best[2], 2)


def train_verifier(seed: int = 0, target_precision: float = 0.95) -> tuple[dict, dict]:
    from app.caching.lookalikes import NEGATIVES
    from app.caching.verifier import PairVerifier
    from app.embedding import get_embedder

    qqp = load_pairs(QQP_FILE)
    x = features(qqp)
    tr, va, te = split(len(qqp.same), seed)
    best = None
    for alpha in (1.0, 3.0, 10.0):
        weights = fit_mlp(x[tr], qqp.same[tr].astype(int), alpha, seed)
        ver = PairVerifier({"version": "tmp", "threshold": 0.5, "hand_features": HAND_FEATURES, **weights})
        proba = ver.proba_features(x[va])
        auc = _auc(proba, qqp.same[va])
        if best is None or auc > best[0]:
            best = (auc, alpha, weights, ver)
    _, alpha, weights, ver = best
    emb = get_embedder()
    neg_a = emb.encode([a for a, _ in NEGATIVES])
    neg_b = emb.encode([b for _, b in NEGATIVES])
    lookalike = max(ver.proba(b, a, eb, ea) for (a, b), ea, eb in zip(NEGATIVES, neg_a, neg_b, strict=True)
                    if hard_veto(b, a) is None)
    vetoed = np.array([hard_veto(b, a) is not None for a, b in zip(qqp.a, qqp.b, strict=True)])
    proba = ver.proba_features(x)
    proba[vetoed] = 0.0
    gate, vt = choose_operating_point(qqp.cosine[va], proba[va], qqp.same[va], target_precision, lookalike)
    prec, rate, hits = precision_hit_rate((qqp.cosine[te] >= gate) & (proba[te] >= vt), qqp.same[te])
    artifact = {
        "version": f"verifier-mlp-{time.strftime('%Y%m%d')}-s{seed}",
        "threshold": vt,
        "similarity_gate": gate,
        "hand_features": HAND_FEATURES,
        **weights,
        "metadata": {
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "data_file": QQP_FILE, "data_sha256": qqp.sha256,
            "split": {"seed": seed, "train": len(tr), "validation": len(va), "test": len(te)},
            "model": "MLP(64) over hand features + |a-b| + a*b of MiniLM embeddings", "alpha": alpha,
            "validation_auc": best[0], "target_precision_validation": target_precision,
            "max_lookalike_negative_proba": lookalike,
            "test": {"precision": prec, "duplicate_hit_rate": rate, "hits": hits},
        },
    }
    return artifact, {"qqp": qqp, "x": x, "test_idx": te}


def _auc(score: np.ndarray, label: np.ndarray) -> float:
    order = np.argsort(score)
    ranks = np.empty(len(score))
    ranks[order] = np.arange(1, len(score) + 1)
    pos = label.sum()
    return float((ranks[label].sum() - pos * (pos + 1) / 2) / (pos * (len(label) - pos)))
