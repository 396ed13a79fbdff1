"""Semantic-cache quality per operating point, with bootstrap 95 % intervals over disjoint splits.

Sets (query = ``b``, cached = ``a``; vetoes applied; a pair is served when cosine >= gate and the
verifier's P(same) >= threshold):

* **choose** (thresholds are picked here and nowhere else): 800 of the QQP pairs held out from
  verifier training, our everyday calibration paraphrases/look-alikes, ``lookalikes.py``;
* **report** (never used to pick anything): 800 other held-out QQP pairs as two disjoint splits,
  400 of GPTCache's paraphrases as two disjoint halves, our everyday eval paraphrases/look-alikes.

Outside set (``intent_pairs.py``, when ``make eval-data`` installed it): OpenVoiceOS intent files, split by
skill: group 0 joins the choose sets (``ovos_choose``), groups 1 and 2 are report splits; their intervals
resample whole intents (pairs of one intent are not independent).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from app.caching.pair_features import hard_veto
from app.caching.slots import lookalike_veto
from app.caching.token_features import TokenView, encode_tokens
from app.caching.train_verifier import PARAPHRASE_FILE, QQP_FILE, split
from app.embedding import emb_cache_dir
from app.routing.calibration import bootstrap_ci
from app.routing.datasets import embed_texts_cached
from app.routing.train import REPO, shared_data_dir

DATA_DIR = Path(__file__).resolve().parent / "data"
EVERYDAY_EVAL = DATA_DIR / "everyday_paraphrases_eval.jsonl"
EVERYDAY_CALIBRATION = DATA_DIR / "everyday_paraphrases_calibration.jsonl"
GATES = (0.50, 0.55, 0.60, 0.65, 0.70, 0.75, 0.80)  # below strict's 0.80 too: all (<= 4) candidates verified at once
QQP_PAIRS = 1600  # of the 4,000 held-out pairs: half to choose, two report splits of 400 (2 busy cores)
PARAPHRASE_PAIRS = 400  # of GPTCache's 999: two report halves of 200
THRESHOLDS = tuple(round(t, 3) for t in np.arange(0.40, 0.901, 0.005))


@dataclass
class ScoredPairs:
    name: str
    a: list[str]
    b: list[str]
    same: np.ndarray
    cosine: np.ndarray
    proba: np.ndarray  # verifier P(same), 0 where a hard veto fires
    slot: np.ndarray  # look-alike edit (slots.py), refused where the operating point has the slot veto
    groups: list[str] | None = field(default=None)  # cluster per pair: the bootstrap resamples whole clusters
    # the int8 prefilter (app/caching/prefilter.py): the index's int8 cosine per pair, searched margin below the gate
    search: np.ndarray | None = field(default=None)
    margin: float = 0.0

    def subset(self, idx: np.ndarray, name: str) -> ScoredPairs:
        return ScoredPairs(name, [self.a[i] for i in idx], [self.b[i] for i in idx], self.same[idx],
                           self.cosine[idx], self.proba[idx], self.slot[idx],
                           None if self.groups is None else [self.groups[i] for i in idx],
                           None if self.search is None else self.search[idx], self.margin)

    def served(self, gate: float, threshold: float, slot_veto: bool = False) -> np.ndarray:
        hit = (self.cosine >= gate) & (self.proba >= threshold)
        if self.search is not None:  # what the int8 search never found is never verified
            hit &= self.search >= gate - self.margin
        return hit & ~self.slot if slot_veto else hit


def merged(name: str, sets: list[ScoredPairs]) -> ScoredPairs:
    """Several sets as one (for a plot): texts dropped, the int8 search cosines kept when every set has them."""
    search = [s.search for s in sets]
    return ScoredPairs(name, [], [], *[np.concatenate([getattr(s, f) for s in sets])
                                       for f in ("same", "cosine", "proba", "slot")],
                       search=None if any(x is None for x in search) else np.concatenate(search),
                       margin=sets[0].margin)


def _encode_both(texts: list[str], batch_size: int = 32) -> tuple[np.ndarray, list[TokenView]]:
    """Sentence vectors and token views: on ONNX Runtime what the gateway computes (``encode`` and
    ``encode_tokens``, so an int8 backend is evaluated as it runs), else one torch forward pass per batch."""
    import torch

    from app.embedding import _lock, get_embedder

    embedder = get_embedder()
    if embedder.onnx is not None:
        views = encode_tokens(texts, batch_size)
        return embedder.encode(texts, batch_size), views
    model = embedder.model
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # similar lengths batch with little padding
    sentences, views = [], []
    with _lock, torch.inference_mode():
        for i in range(0, len(texts), batch_size):
            feats = model.preprocess([texts[k] for k in order[i:i + batch_size]])
            out = model(feats)
            sentences.append(torch.nn.functional.normalize(out["sentence_embedding"], dim=1).numpy())
            tokens = torch.nn.functional.normalize(out["token_embeddings"], dim=2).numpy()
            mask = feats["attention_mask"].numpy().astype(bool)
            for j in range(tokens.shape[0]):
                n = int(mask[j].sum())
                views.append(TokenView(feats["input_ids"][j, 1:n - 1].numpy().astype(np.int64),
                                       tokens[j, 1:n - 1].astype(np.float32)))
    back = np.argsort(order)
    return np.concatenate(sentences).astype(np.float32)[back], [views[k] for k in back]


def _vectors_and_views(texts: list[str], tag: str) -> tuple[np.ndarray, dict[str, TokenView]]:
    """Both, cached in .cache/emb by content hash (one forward pass when neither is cached)."""
    sha = hashlib.sha256("\x00".join(texts).encode()).hexdigest()[:16]
    vec_cache = emb_cache_dir(REPO) / f"{tag}-{sha}.npy"
    tok_cache = emb_cache_dir(REPO) / f"{tag}-{sha}-tokens.npz"
    if not vec_cache.exists() and not tok_cache.exists():
        vectors, views = _encode_both(texts)
        vec_cache.parent.mkdir(parents=True, exist_ok=True)
        np.save(vec_cache, vectors)
        offs = np.cumsum([0] + [len(v.ids) for v in views])
        np.savez(tok_cache, ids=np.concatenate([v.ids for v in views]),
                 vecs=np.concatenate([v.vecs for v in views]).astype(np.float16), offsets=offs)
    return embed_texts_cached(texts, tag), _views_cached(texts, tag)


def _views_cached(texts: list[str], tag: str) -> dict[str, TokenView]:
    sha = hashlib.sha256("\x00".join(texts).encode()).hexdigest()[:16]
    cache = emb_cache_dir(REPO) / f"{tag}-{sha}-tokens.npz"
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
    if views is None:
        views = dict(zip(sorted(set(a) | set(b)), encode_tokens(sorted(set(a) | set(b))), strict=True))
    slot = np.array([lookalike_veto(q, c, views[q], views[c]) for c, q in zip(a, b, strict=True)], dtype=bool)
    return ScoredPairs(name, a, b, same, np.sum(ea * eb, axis=1), proba, slot)


def hand_pairs(verifier, path: Path | None = None, pairs: list[tuple[str, str, bool]] | None = None,
               name: str = "") -> ScoredPairs:
    """Score a hand-written JSONL set (a, b, same) or an in-code list of (a, b, same)."""
    if pairs is None:
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        pairs = [(r["a"], r["b"], bool(r["same"])) for r in rows]
    a, b = [p[0] for p in pairs], [p[1] for p in pairs]
    texts = sorted(set(a) | set(b))
    tag = f"cache-{name or path.stem}"
    vecs, views = _vectors_and_views(texts, tag)
    vectors = dict(zip(texts, vecs, strict=True))
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
    vecs, views = _vectors_and_views(texts, tag)
    vectors = dict(zip(texts, vecs, strict=True))
    return _score(verifier, name, a, b, np.array([bool(r["same"]) for r in rows]),
                  np.stack([vectors[t] for t in a]), np.stack([vectors[t] for t in b]), views)


def build_sets(verifier, seed: int = 0, outside: bool = True) -> tuple[dict[str, ScoredPairs], dict[str, ScoredPairs]]:
    """(choose sets, report sets), all disjoint. ``outside``: add the OVOS intent splits if installed."""
    from app.caching.intent_pairs import scored_splits
    from app.caching.lookalikes import NEGATIVES, POSITIVES

    _, _, held_out = split(len(_rows(QQP_FILE)), seed)  # never seen by verifier training or its threshold choice
    perm = np.random.default_rng(seed + 1).permutation(held_out)[:QQP_PAIRS]
    half = len(perm) // 2
    qqp_scored = dataset_pairs(verifier, QQP_FILE, "qqp", perm)
    para_idx = np.sort(np.random.default_rng(seed + 2).permutation(len(_rows(PARAPHRASE_FILE)))[:PARAPHRASE_PAIRS])
    para = dataset_pairs(verifier, PARAPHRASE_FILE, "gptcache", para_idx)
    para_perm = np.random.default_rng(seed + 3).permutation(len(para.same))
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
    if outside:
        try:
            ovos = scored_splits(verifier)
        except FileNotFoundError:
            ovos = {}  # not installed: the CLI says so
        if ovos:
            choose["ovos_choose"] = ovos[0]
            report["ovos_r1"], report["ovos_r2"] = ovos[1], ovos[2]
    return choose, report


def choose_balanced(choose: dict[str, ScoredPairs], min_qqp_precision: float = 0.85, margin: float = 0.05,
                    recall_sets: tuple[str, ...] = ("everyday_cal",),
                    negative_sets: tuple[str, ...] = ("everyday_cal", "lookalikes")) -> tuple[float, float, dict]:
    """The (gate, threshold) serving the most paraphrases of ``recall_sets`` (mean recall) with no negative of
    ``negative_sets`` served (every negative's P(same) at least ``margin`` under the threshold) and QQP
    precision >= the floor. Sets named but absent from ``choose`` are ignored."""
    negatives = [choose[k] for k in negative_sets if k in choose]
    recall_names = [k for k in recall_sets if k in choose and choose[k].same.any()]
    recalls = [choose[k] for k in recall_names]
    qqp = choose["qqp_choose"]
    best = None
    for gate in GATES:
        worst = max(float(np.max(np.where((n.cosine >= gate) & ~n.same & ~n.slot, n.proba, 0.0), initial=0.0))
                    for n in negatives)
        for t in THRESHOLDS:
            if t < worst + margin:
                continue
            hit = qqp.served(gate, t, slot_veto=True)
            precision = float(qqp.same[hit].mean()) if hit.any() else 1.0
            if precision < min_qqp_precision:
                continue
            per_set = [float(r.served(gate, t, slot_veto=True)[r.same].mean()) for r in recalls]
            recall = float(np.mean(per_set))
            qqp_rate = float(hit[qqp.same].mean())
            key = (recall, qqp_rate)
            if best is None or key > best[0]:
                info = {"recall": recall, "qqp_precision": precision, "qqp_hit_rate": qqp_rate,
                        "max_negative_proba": worst}
                info.update({f"{k}_recall": v for k, v in zip(recall_names, per_set, strict=True)})
                best = (key, gate, t, info)
    if best is None:
        raise ValueError("no operating point meets the constraints")
    return best[1], best[2], best[3]


def measure(s: ScoredPairs, gate: float, threshold: float, slot_veto: bool = False,
            rounds: int = 1000) -> dict[str, tuple]:
    """Precision, duplicate (paraphrase) hit rate and false hits, each (point, low, high)."""
    served = s.served(gate, threshold, slot_veto)
    pos, neg = np.nonzero(s.same)[0], np.nonzero(~s.same)[0]
    out: dict[str, tuple] = {"pairs": (len(s.same), int(s.same.sum()), int((~s.same).sum()))}
    pos_groups = None if s.groups is None else [s.groups[i] for i in pos]
    if len(pos):
        out["hit_rate"] = bootstrap_ci(lambda i: float(served[pos][i].mean()), len(pos), rounds, groups=pos_groups)
    if len(neg):
        out["false_hits"] = (int(served[neg].sum()), len(neg))
        if len(pos):
            def precision(i: np.ndarray) -> float:
                hits = served[i]
                return float(s.same[i][hits].mean()) if hits.any() else float("nan")
            out["precision"] = bootstrap_ci(precision, len(s.same), rounds, groups=s.groups)
    return out


def curve(s: ScoredPairs, gate: float, slot_veto: bool = False, thresholds=THRESHOLDS) -> tuple[np.ndarray, np.ndarray]:
    """(hit rate, precision) at each threshold for a gate."""
    rates, precisions = [], []
    for t in thresholds:
        served = s.served(gate, t, slot_veto)
        rates.append(float(served[s.same].mean()) if s.same.any() else 0.0)
        precisions.append(float(s.same[served].mean()) if served.any() else 1.0)
    return np.array(rates), np.array(precisions)
