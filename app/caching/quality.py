"""Semantic-cache quality per operating point, with bootstrap 95 % intervals over disjoint splits.

Sets (query = ``b``, cached = ``a``; vetoes applied; a pair is served when cosine >= gate and the
verifier's P(same) >= threshold):

* **choose** (thresholds are picked here and nowhere else): half of the QQP pairs held out from
  verifier training, our everyday calibration paraphrases/look-alikes, ``lookalikes.py``;
* **report** (never used to pick anything): the other half of held-out QQP as two disjoint splits,
  GPTCache's paraphrases as two disjoint halves, our everyday eval paraphrases/look-alikes.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from app.caching.pair_features import hard_veto
from app.caching.token_features import TokenView, encode_tokens
from app.caching.train_verifier import PARAPHRASE_FILE, QQP_FILE, split
from app.routing.calibration import bootstrap_ci
from app.routing.datasets import embed_texts_cached
from app.routing.train import REPO, shared_data_dir

DATA_DIR = Path(__file__).resolve().parent / "data"
EVERYDAY_EVAL = DATA_DIR / "everyday_paraphrases_eval.jsonl"
EVERYDAY_CALIBRATION = DATA_DIR / "everyday_paraphrases_calibration.jsonl"
GATES = (0.60, 0.65, 0.70, 0.75, 0.80)
THRESHOLDS = tuple(round(t, 3) for t in np.arange(0.40, 0.901, 0.005))


@dataclass
class ScoredPairs:
    name: str
    a: list[str]
    b: list[str]
    same: np.ndarray
    cosine: np.ndarray
    proba: np.ndarray  # verifier P(same), 0 where a hard veto fires

    def subset(self, idx: np.ndarray, name: str) -> ScoredPairs:
        return ScoredPairs(name, [self.a[i] for i in idx], [self.b[i] for i in idx], self.same[idx],
                           self.cosine[idx], self.proba[idx])

    def served(self, gate: float, threshold: float) -> np.ndarray:
        return (self.cosine >= gate) & (self.proba >= threshold)


def _views_cached(texts: list[str], tag: str) -> dict[str, TokenView]:
    sha = hashlib.sha256("\x00".join(texts).encode()).hexdigest()[:16]
    cache = REPO / ".cache" / "emb" / f"{tag}-{sha}-tokens.npz"
    if cache.exists():
        with np.load(cache, allow_pickle=False) as z:
            ids, vecs, offs = z["ids"], z["vecs"].astype(np.float32), z["offsets"]
        views = [TokenView(ids[offs[i]:offs[i + 1]], vecs[offs[i]:offs[i + 1]]) for i in range(len(texts))]
    else:
        views = encode_tokens(texts)
        offs = np.cumsum([0] + [len(v.ids) for v in views])
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, ids=np.concatenate([v.ids for v in views]),
                 vecs=np.concatenate([v.vecs for v in views]).astype(np.float16), offsets=offs)
    return dict(zip(texts, views, strict=True))


def _score(verifier, name: str, a: list[str], b: list[str], same: np.ndarray, ea: np.ndarray, eb: np.ndarray,
           views: dict[str, TokenView] | None) -> ScoredPairs:
    proba = verifier.proba_pairs(b, a, eb, ea, views=views)
    vetoed = np.array([hard_veto(q, c) is not None for c, q in zip(a, b, strict=True)])
    proba = np.where(vetoed, 0.0, proba)
    return ScoredPairs(name, a, b, same, np.sum(ea * eb, axis=1), proba)


def hand_pairs(verifier, path: Path | None = None, pairs: list[tuple[str, str, bool]] | None = None,
               name: str = "") -> ScoredPairs:
    """Score a hand-written JSONL set (a, b, same) or an in-code list of (a, b, same)."""
    if pairs is None:
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        pairs = [(r["a"], r["b"], bool(r["same"])) for r in rows]
    a, b = [p[0] for p in pairs], [p[1] for p in pairs]
    texts = sorted(set(a) | set(b))
    tag = f"cache-{name or path.stem}"
    vectors = dict(zip(texts, embed_texts_cached(texts, tag), strict=True))
    views = _views_cached(texts, tag)
    return _score(verifier, name or path.stem, a, b, np.array([p[2] for p in pairs]),
                  np.stack([vectors[t] for t in a]), np.stack([vectors[t] for t in b]), views)


def _rows(file: str) -> list[dict]:
    path = shared_data_dir() / file
    if not path.exists():
        raise FileNotFoundError(f"{path} not found; put ../shared/data beside the repo or set LLMGW_SHARED_DATA")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def dataset_pairs(verifier, file: str, name: str, idx: np.ndarray | None = None) -> ScoredPairs:
    """Score pairs ``idx`` of a shared data file (vectors and token views of just those texts, cached)."""
    rows = _rows(file)
    rows = rows if idx is None else [rows[i] for i in idx]
    a, b = [r["a"] for r in rows], [r["b"] for r in rows]
    texts = sorted(set(a) | set(b))
    tag = f"cache-{Path(file).stem}-{len(rows)}"
    vectors = dict(zip(texts, embed_texts_cached(texts, tag), strict=True))
    return _score(verifier, name, a, b, np.array([bool(r["same"]) for r in rows]),
                  np.stack([vectors[t] for t in a]), np.stack([vectors[t] for t in b]), _views_cached(texts, tag))


def build_sets(verifier, seed: int = 0) -> tuple[dict[str, ScoredPairs], dict[str, ScoredPairs]]:
    """(choose sets, report sets), all disjoint."""
    from app.caching.lookalikes import NEGATIVES, POSITIVES

    _, _, held_out = split(len(_rows(QQP_FILE)), seed)  # never seen by verifier training or its threshold choice
    perm = np.random.default_rng(seed + 1).permutation(held_out)
    half = len(perm) // 2
    qqp_scored = dataset_pairs(verifier, QQP_FILE, "qqp", perm)
    para = dataset_pairs(verifier, PARAPHRASE_FILE, "gptcache")
    para_perm = np.random.default_rng(seed + 2).permutation(len(para.same))
    lookalikes = [(a, b, False) for a, b in NEGATIVES] + [(a, b, True) for a, b in POSITIVES]
    choose = {
        "qqp_choose": qqp_scored.subset(np.arange(half), "QQP held-out, choose half"),
        "everyday_cal": hand_pairs(verifier, EVERYDAY_CALIBRATION),
        "lookalikes": hand_pairs(verifier, pairs=lookalikes, name="lookalikes-py"),
    }
    q = len(perm) - half
    report = {
        "qqp_r1": qqp_scored.subset(np.arange(half, half + q // 2), "QQP held-out, report split 1"),
        "qqp_r2": qqp_scored.subset(np.arange(half + q // 2, len(perm)), "QQP held-out, report split 2"),
        "gptcache_1": para.subset(para_perm[: len(para_perm) // 2], "GPTCache paraphrases, half 1"),
        "gptcache_2": para.subset(para_perm[len(para_perm) // 2:], "GPTCache paraphrases, half 2"),
        "everyday_eval": hand_pairs(verifier, EVERYDAY_EVAL),
    }
    return choose, report


def choose_balanced(choose: dict[str, ScoredPairs], min_qqp_precision: float = 0.85,
                    margin: float = 0.05) -> tuple[float, float, dict]:
    """The (gate, threshold) serving the most everyday calibration paraphrases with no look-alike negative
    served (every negative's P(same) at least ``margin`` under the threshold) and QQP precision >= the floor."""
    negatives = [s for s in (choose["everyday_cal"], choose["lookalikes"])]
    qqp, everyday = choose["qqp_choose"], choose["everyday_cal"]
    best = None
    for gate in GATES:
        worst = max(float(np.max(np.where((n.cosine >= gate) & ~n.same, n.proba, 0.0))) for n in negatives)
        for t in THRESHOLDS:
            if t < worst + margin:
                continue
            hit = qqp.served(gate, t)
            precision = float(qqp.same[hit].mean()) if hit.any() else 1.0
            if precision < min_qqp_precision:
                continue
            recall = float(everyday.served(gate, t)[everyday.same].mean())
            qqp_rate = float(hit[qqp.same].mean())
            key = (recall, qqp_rate)
            if best is None or key > best[0]:
                best = (key, gate, t, {"everyday_cal_recall": recall, "qqp_precision": precision,
                                       "qqp_hit_rate": qqp_rate, "max_negative_proba": worst})
    if best is None:
        raise ValueError("no operating point meets the constraints")
    return best[1], best[2], best[3]


def measure(s: ScoredPairs, gate: float, threshold: float, rounds: int = 1000) -> dict[str, tuple]:
    """Precision, duplicate (paraphrase) hit rate and false hits, each (point, low, high)."""
    served = s.served(gate, threshold)
    pos, neg = np.nonzero(s.same)[0], np.nonzero(~s.same)[0]
    out: dict[str, tuple] = {"pairs": (len(s.same), int(s.same.sum()), int((~s.same).sum()))}
    if len(pos):
        out["hit_rate"] = bootstrap_ci(lambda i: float(served[pos][i].mean()), len(pos), rounds)
    if len(neg):
        out["false_hits"] = (int(served[neg].sum()), len(neg))
        if len(pos):
            def precision(i: np.ndarray) -> float:
                hits = served[i]
                return float(s.same[i][hits].mean()) if hits.any() else float("nan")
            out["precision"] = bootstrap_ci(precision, len(s.same), rounds)
    return out


def curve(s: ScoredPairs, gate: float, thresholds=THRESHOLDS) -> tuple[np.ndarray, np.ndarray]:
    """(hit rate, precision) at each threshold for a gate."""
    rates, precisions = [], []
    for t in thresholds:
        served = s.served(gate, t)
        rates.append(float(served[s.same].mean()) if s.same.any() else 0.0)
        precisions.append(float(s.same[served].mean()) if served.any() else 1.0)
    return np.array(rates), np.array(precisions)
