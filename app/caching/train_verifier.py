"""Train the semantic-hit verifier ensemble on Quora Question Pairs and choose its operating point.

Split: 70% train + 10% validation = the fit set; 20% test (report only). The threshold comes from
out-of-fold predictions on the fit set (k-fold): the highest duplicate hit rate whose precision is
>= the target, above every hand-written look-alike negative's probability. The shipped models are
then fitted on the whole fit set. The pair convention everywhere: query = ``b``, cached = ``a``.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from app.caching.pair_features import HAND_FEATURES, hard_veto
from app.caching.token_features import TOKEN_FEATURES, Idf, TokenView, encode_tokens
from app.caching.trees import export_hgb
from app.embedding import emb_cache_dir
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
    cache = emb_cache_dir(REPO) / f"{Path(name).stem}-{sha[:16]}.npy"
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


def split(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    idx = list(range(n))
    random.Random(seed).shuffle(idx)
    a, b = int(n * 0.7), int(n * 0.8)
    return np.array(sorted(idx[:a])), np.array(sorted(idx[a:b])), np.array(sorted(idx[b:]))


def precision_hit_rate(hit: np.ndarray, same: np.ndarray) -> tuple[float, float, int]:
    hits = int(hit.sum())
    precision = float(same[hit].mean()) if hits else 1.0
    return precision, float(hit[same].mean()) if same.any() else 0.0, hits


def precision_at_hit_rate(score: np.ndarray, same: np.ndarray, rate: float) -> float:
    """Precision of the highest-scoring pairs that reach ``rate`` of all duplicates (score -1: never served)."""
    order = np.argsort(-score, kind="stable")
    tp = np.cumsum(same[order])
    k = int(np.searchsorted(tp, int(np.ceil(rate * same.sum())))) + 1
    if k > len(score):
        return 0.0
    return round(float(tp[k - 1] / k), 4) if score[order][k - 1] >= 0 else 0.0


def load_views(name: str, p: Pairs) -> dict[str, TokenView]:
    """Token views of every text of a pair file, cached in .cache/emb beside the sentence vectors."""
    texts = sorted(set(p.a) | set(p.b))
    cache = emb_cache_dir(REPO) / f"{Path(name).stem}-{p.sha256[:16]}-tokens.npz"
    if cache.exists():
        with np.load(cache, allow_pickle=False) as z:
            ids, vecs, offs = z["ids"], z["vecs"].astype(np.float32), z["offsets"]
        views = [TokenView(ids[offs[i]:offs[i + 1]], vecs[offs[i]:offs[i + 1]]) for i in range(len(texts))]
    else:
        views = encode_tokens(texts, batch_size=64)
        offs = np.cumsum([0] + [len(v.ids) for v in views])
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, ids=np.concatenate([v.ids for v in views]),
                 vecs=np.concatenate([v.vecs for v in views]).astype(np.float16), offsets=offs)
    return dict(zip(texts, views, strict=True))


def fit_models(tree_x: np.ndarray, mlp_x: np.ndarray, y: np.ndarray, n_mlp: int, n_hgb: int) -> dict[str, np.ndarray]:
    """The ensemble's arrays: ``n_mlp`` MLPs (64 ReLU units) and ``n_hgb`` boosted-tree models."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.neural_network import MLPClassifier

    out: dict[str, np.ndarray] = {}
    mean, scale = mlp_x.mean(axis=0), mlp_x.std(axis=0) + 1e-6
    for i in range(n_mlp):
        mlp = MLPClassifier(hidden_layer_sizes=(64,), alpha=3.0, max_iter=300, early_stopping=True, random_state=i)
        mlp.fit((mlp_x - mean) / scale, y)
        out[f"mlp{i}_mean"], out[f"mlp{i}_scale"] = mean.astype(np.float32), scale.astype(np.float32)
        for k, (w, b) in enumerate(zip(mlp.coefs_, mlp.intercepts_, strict=True)):
            out[f"mlp{i}_w{k}"], out[f"mlp{i}_b{k}"] = w.astype(np.float32), b.astype(np.float32)
    for j in range(n_hgb):
        hgb = HistGradientBoostingClassifier(max_iter=400, learning_rate=0.05, l2_regularization=1.0,
                                             max_features=0.5, random_state=j)
        hgb.fit(tree_x, y)
        out.update({f"hgb{j}_{k}": v for k, v in export_hgb(hgb).items()})
    return out


def fit_aligners(vq: list[TokenView], vc: list[TokenView], cosine: np.ndarray, y: np.ndarray, idf: Idf,
                 n_att: int, epochs: int) -> dict[str, np.ndarray]:
    """``n_att`` attention networks (``alignment_net.py``), arrays prefixed ``att{i}_``."""
    from app.caching.train_alignment import train_alignment

    out: dict[str, np.ndarray] = {}
    for i in range(n_att):
        net = train_alignment(vq, vc, cosine, y, idf, seed=i, epochs=epochs)
        out.update({f"att{i}_{k}": v for k, v in net.items()})
    return out


def artifact_arrays(arrays: dict[str, np.ndarray], idf: Idf, n_mlp: int, n_hgb: int, threshold: float,
                    gate: float, version: str = "tmp", metadata: dict | None = None,
                    n_att: int = 0) -> dict[str, np.ndarray]:
    """Everything ``PairVerifier`` reads: the model arrays, the IDF table and a JSON ``meta`` entry."""
    meta = {"version": version, "threshold": threshold, "similarity_gate": gate, "n_mlp": n_mlp, "n_hgb": n_hgb,
            "n_att": n_att, "mlp_layers": 2, "hand_features": HAND_FEATURES, "token_features": TOKEN_FEATURES,
            "metadata": metadata or {}}
    return {**arrays, "idf": idf.table, "meta": np.asarray(json.dumps(meta))}


def _verifier(arrays: dict[str, np.ndarray], idf: Idf, n_mlp: int, n_hgb: int, gate: float, n_att: int):
    from app.caching.verifier import PairVerifier

    return PairVerifier(artifact_arrays(arrays, idf, n_mlp, n_hgb, 0.5, gate, n_att=n_att))


def choose_threshold(sim: np.ndarray, proba: np.ndarray, same: np.ndarray, gate: float, target: float,
                     floor: float) -> float:
    """Lowest threshold (highest hit rate) with precision >= target, above ``floor``."""
    best = 0.99
    for vt in np.arange(0.995, 0.30, -0.005):
        if vt <= floor:
            break
        prec, _, hits = precision_hit_rate((sim >= gate) & (proba >= vt), same)
        if hits >= 50 and prec >= target:
            best = float(vt)
    return round(best, 3)


def intent_training_pairs(seed: int = 0, family_cap: int = 0) -> tuple[Pairs, dict[str, TokenView], dict]:
    """The short-command training pairs (``train_pairs.py``: skills and Home Assistant templates installed by
    ``make train-data``; ``family_cap``: pairs per intent family, 0 for all), with their token views and counts."""
    from app.caching.quality import _vectors_and_views
    from app.caching.train_pairs import pair_arrays, training_pairs

    def vectors_of(texts: list[str]) -> np.ndarray:
        return _vectors_and_views(texts, "cache-train-intents")[0]

    pairs, counts = training_pairs(vectors_of, seed, family_cap=family_cap)
    a, b, same, ea, eb = pair_arrays(pairs, vectors_of)
    texts = sorted(set(a) | set(b))
    _, views = _vectors_and_views(texts, "cache-train-intents")
    sha = hashlib.sha256("\x00".join(f"{x}\x01{y}\x01{z}" for x, y, z in zip(a, b, same, strict=True)).encode())
    return Pairs(a, b, same, ea, eb, sha.hexdigest()), views, counts


def _concat(p: Pairs, q: Pairs) -> Pairs:
    return Pairs(p.a + q.a, p.b + q.b, np.concatenate([p.same, q.same]), np.concatenate([p.ea, q.ea]),
                 np.concatenate([p.eb, q.eb]), p.sha256)


def train_verifier(seed: int = 0, target_precision: float = 0.90, folds: int = 5, n_mlp: int = 5, n_hgb: int = 4,
                   gate: float = 0.80, n_att: int = 2, att_epochs: int = 8, mix: str = "qqp",
                   intent_weight: int = 1, intent_cap: int = 0) -> tuple[dict[str, np.ndarray], dict]:
    """Returns (artifact arrays for ``np.savez_compressed``, a summary). ``mix``: ``qqp`` (QQP's fit split) or
    ``qqp+intents`` (plus ``train_pairs.py``'s short-command pairs, at most ``intent_cap`` per intent family
    when set, each repeated ``intent_weight`` times; they join every fold's training part, never the QQP test
    split or the threshold's QQP precision)."""
    from app.caching.lookalikes import NEGATIVES
    from app.caching.verifier import pair_rows
    from app.embedding import get_embedder

    t0 = time.time()
    qqp = load_pairs(QQP_FILE)
    views = load_views(QQP_FILE, qqp)
    tr, va, te = split(len(qqp.same), seed)
    fit = np.concatenate([tr, va])
    n_qqp, extra, counts = len(qqp.same), np.array([], dtype=int), {}
    if mix == "qqp+intents":
        intents, intent_views, counts = intent_training_pairs(seed, intent_cap)
        views = {**views, **intent_views}
        qqp = _concat(qqp, intents)
        extra = np.arange(n_qqp, len(qqp.same))
    elif mix != "qqp":
        raise ValueError(f"unknown mix {mix!r} (qqp, qqp+intents)")
    idf = Idf.fit([views[t] for i in np.concatenate([fit, extra]) for t in (qqp.a[i], qqp.b[i])],
                  vocab_size=_vocab_size())
    tree_x, mlp_x = pair_rows(qqp.b, qqp.a, qqp.eb, qqp.ea, [views[t] for t in qqp.b], [views[t] for t in qqp.a],
                              idf)
    y = qqp.same.astype(int)
    vq, vc, cos = [views[t] for t in qqp.b], [views[t] for t in qqp.a], qqp.cosine

    def fitted(rows: np.ndarray):
        rows = np.concatenate([rows, np.tile(extra, intent_weight)]).astype(int)
        arrays = {**fit_models(tree_x[rows], mlp_x[rows], y[rows], n_mlp, n_hgb),
                  **fit_aligners([vq[i] for i in rows], [vc[i] for i in rows], cos[rows], y[rows], idf, n_att,
                                 att_epochs)}
        return arrays, _verifier(arrays, idf, n_mlp, n_hgb, gate, n_att)

    def proba(ver, rows: np.ndarray) -> np.ndarray:
        return ver.proba_rows(tree_x[rows], mlp_x[rows],
                              ver.aligned_proba([vq[i] for i in rows], [vc[i] for i in rows], cos[rows]))

    vetoed = np.array([hard_veto(b, a) is not None for a, b in zip(qqp.a, qqp.b, strict=True)])
    qqp = qqp.subset(np.arange(n_qqp))  # from here on: QQP only (threshold, test figures)
    oof = np.zeros(n_qqp)
    fold_of = np.random.RandomState(seed).randint(0, max(folds, 1), len(fit))
    for k in range(folds):
        trn, hold = fit[fold_of != k], fit[fold_of == k]
        oof[hold] = proba(fitted(trn)[1], hold)
        print(f"fold {k + 1}/{folds} done ({time.time() - t0:.0f} s)", flush=True)
    arrays, ver = fitted(fit)
    emb = get_embedder()
    neg_a, neg_b = emb.encode([a for a, _ in NEGATIVES]), emb.encode([b for _, b in NEGATIVES])
    kept = [(a, b, ea, eb) for (a, b), ea, eb in zip(NEGATIVES, neg_a, neg_b, strict=True) if hard_veto(b, a) is None]
    lookalike = float(max(ver.proba(b, a, eb, ea) for a, b, ea, eb in kept)) if kept else 0.0
    oof[vetoed[:n_qqp]] = 0.0
    test_p = proba(ver, te)
    test_p[vetoed[te]] = 0.0
    if folds:
        vt = choose_threshold(qqp.cosine[fit], oof[fit], qqp.same[fit], gate, target_precision, lookalike)
    else:  # no out-of-fold pass: the same rule on the QQP choose half of llmgw cache eval (never a report split)
        chosen = np.isin(te, qqp_choose_half(n_qqp, seed))
        vt = choose_threshold(qqp.cosine[te][chosen], test_p[chosen], qqp.same[te][chosen], gate, target_precision,
                              lookalike)
    served = (qqp.cosine >= gate) & ~vetoed[:n_qqp]
    gated = np.where(served, oof, -1.0)
    gated_test = np.where(served[te], test_p, -1.0)
    prec, rate, hits = precision_hit_rate((qqp.cosine[te] >= gate) & (test_p >= vt), qqp.same[te])
    oof_prec, oof_rate, _ = precision_hit_rate((qqp.cosine[fit] >= gate) & (oof[fit] >= vt), qqp.same[fit])
    metadata = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "data_file": QQP_FILE, "data_sha256": qqp.sha256, "mix": mix, "intent_pairs": counts,
        "intent_weight": intent_weight if mix != "qqp" else 0,
        "split": {"seed": seed, "fit": len(fit), "test": len(te), "folds": folds},
        "model": f"mean of {n_mlp} MLP(64) over hand + token + |a-b| + a*b and {n_hgb} boosted trees over "
                 f"hand + token features, averaged with {n_att} attention networks over the token vectors",
        "target_precision_out_of_fold": target_precision,
        "threshold_chosen_on": "out-of-fold fit set" if folds else "QQP choose half (held out, not reported)",
        "out_of_fold": None if not folds else {"precision": oof_prec, "duplicate_hit_rate": oof_rate,
                        "precision_at_hit_rate": {str(r): precision_at_hit_rate(gated[fit], qqp.same[fit], r)
                                                  for r in (0.30, 0.35, 0.40)}},
        "max_lookalike_negative_proba": lookalike,
        "test": {"precision": prec, "duplicate_hit_rate": rate, "hits": hits, "auc": _auc(test_p, qqp.same[te]),
                 "precision_at_hit_rate": {str(r): precision_at_hit_rate(gated_test, qqp.same[te], r)
                                           for r in (0.30, 0.35, 0.40)}},
        "train_seconds": round(time.time() - t0, 1),
    }
    version = f"verifier-ensemble{'-att' if n_att else ''}-{mix}-{time.strftime('%Y%m%d')}-s{seed}"
    return artifact_arrays(arrays, idf, n_mlp, n_hgb, vt, gate, version, metadata, n_att), metadata


def qqp_choose_half(n: int, seed: int = 0) -> np.ndarray:
    """The held-out QQP pairs ``quality.build_sets`` chooses on (the other held-out pairs are report splits)."""
    from app.caching.quality import QQP_PAIRS

    _, _, held_out = split(n, seed)
    perm = np.random.default_rng(seed + 1).permutation(held_out)[:QQP_PAIRS]
    return perm[: len(perm) // 2]


def _vocab_size() -> int:
    from app.embedding import get_embedder

    return int(get_embedder().model.tokenizer.vocab_size)


def _auc(score: np.ndarray, label: np.ndarray) -> float:
    order = np.argsort(score)
    ranks = np.empty(len(score))
    ranks[order] = np.arange(1, len(score) + 1)
    pos = label.sum()
    return float((ranks[label].sum() - pos * (pos + 1) / 2) / (pos * (len(label) - pos)))
