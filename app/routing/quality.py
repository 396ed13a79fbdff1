"""Router quality with bootstrap 95 % intervals: APGR on the RouteLLM held-out split, accuracy on our
everyday eval set (by category and case), each beside the plain prompt-length rule.

The length rule's cut-off is chosen on the calibration set, as the router's threshold is; the eval
set only reports.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from app.routing.calibration import best_accuracy_threshold, bootstrap_ci
from app.routing.datasets import CALIBRATION_FILE, EVAL_FILE, LabelledPrompts, embed_texts_cached, load_everyday
from app.routing.evaluate import evaluate_router

Interval = tuple[float, float, float]  # (point, low, high)


@dataclass
class RouteLLMQuality:
    n: int
    apgr: dict[str, Interval]  # router | base (v1 model) | length rule
    curves: dict[str, tuple[np.ndarray, np.ndarray]]  # name -> (large share, PGR)
    share_for_pgr50: dict[str, float]


@dataclass
class EverydayQuality:
    n: int
    threshold: float
    length_cutoff: int
    accuracy: dict[str, Interval]  # router | length rule
    auc: dict[str, Interval]
    large_share: dict[str, float]
    by_category: dict[str, dict[str, Interval]]  # category -> {router, length, n}
    by_case: dict[str, dict[str, Interval]]
    length_wins: list[tuple[str, str, bool]]  # (category, prompt, label) where only the length rule is right
    router_wins: int
    curves: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)  # share -> large-needed recall


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    pos, neg = scores[labels], scores[~labels]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    ranks = np.argsort(np.argsort(np.concatenate([pos, neg]), kind="stable"), kind="stable") + 1.0
    # average ranks for ties
    allv = np.concatenate([pos, neg])
    for v in np.unique(allv):
        m = allv == v
        if m.sum() > 1:
            ranks[m] = ranks[m].mean()
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def recall_curve(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Share sent to large (highest scores first) vs share of large-needed prompts that got the large model."""
    order = np.argsort(-scores, kind="stable")
    hits = np.concatenate([[0], np.cumsum(labels[order])])
    return np.arange(len(scores) + 1) / len(scores), hits / max(labels.sum(), 1)


def _acc(pred: np.ndarray, y: np.ndarray) -> callable:
    return lambda idx: float(np.mean(pred[idx] == y[idx])) if len(idx) else float("nan")


def everyday_quality(clf, threshold: float | None = None, eval_set: LabelledPrompts | None = None,
                     rounds: int = 1000) -> EverydayQuality:
    cal = load_everyday(CALIBRATION_FILE)
    ev = eval_set or load_everyday(EVAL_FILE)
    scores = clf.score_many(ev.prompts, embed_texts_cached(ev.prompts, "everyday-eval"), ev.turns)
    t = clf.threshold if threshold is None else threshold
    lengths = np.array([len(p) for p in ev.prompts], dtype=float)
    cal_len = np.array([len(p) for p in cal.prompts], dtype=float)
    cutoff = best_accuracy_threshold(cal_len, cal.large)
    y = ev.large
    preds = {"router": scores >= t, "length rule": lengths >= cutoff}
    rank_scores = {"router": scores, "length rule": lengths}
    accuracy = {k: bootstrap_ci(_acc(p, y), len(y), rounds) for k, p in preds.items()}
    aucs = {k: bootstrap_ci(lambda idx, s=s: auc(s[idx], y[idx]), len(y), rounds) for k, s in rank_scores.items()}

    def breakdown(keys: list[str]) -> dict[str, dict[str, Interval]]:
        out = {}
        for key in sorted(set(keys)):
            idx = np.array([i for i, k in enumerate(keys) if k == key])
            out[key] = {name: bootstrap_ci(lambda j, p=p, idx=idx: float(np.mean(p[idx][j] == y[idx][j])), len(idx),
                                           rounds) for name, p in preds.items()}
            out[key]["n"] = (float(len(idx)), float(y[idx].sum()), 0.0)
        return out

    router_ok, length_ok = preds["router"] == y, preds["length rule"] == y
    wins = [(ev.category[i], ev.prompts[i], bool(y[i])) for i in np.nonzero(length_ok & ~router_ok)[0]]
    return EverydayQuality(
        n=len(y), threshold=float(t), length_cutoff=int(np.ceil(cutoff)), accuracy=accuracy, auc=aucs,
        large_share={k: float(p.mean()) for k, p in preds.items()},
        by_category=breakdown(ev.category), by_case=breakdown(ev.case), length_wins=wins,
        router_wins=int((router_ok & ~length_ok).sum()),
        curves={k: recall_curve(s, y) for k, s in rank_scores.items()},
    )


def routellm_quality(clf, rounds: int = 300) -> RouteLLMQuality:
    """APGR (bootstrap over prompts) of the router, its base MLP and the length rule on the held-out split's
    report sample (600 of its 2,304 prompts; 300 others fit the blend)."""
    from app.routing.datasets import routellm_test_parts, routellm_vectors
    from app.routing.train import load_dataset

    data = load_dataset()
    test, _ = routellm_test_parts(data.groups, clf.metadata.get("split", {}).get("seed", 0))
    prompts = [data.prompts[i] for i in test]
    emb = routellm_vectors(data.prompts, data.sha256, test)
    small, large = data.small_ok[test], data.large_ok[test]
    scores = {"router": clf.score_many(prompts, emb),
              "base (v1 MLP)": clf.score_features(clf.base_features(prompts, emb)),
              "length rule": np.array([len(p) for p in prompts], dtype=float)}
    apgr, curves, half = {}, {}, {}
    for name, s in scores.items():
        apgr[name] = bootstrap_ci(lambda idx, s=s: evaluate_router(s[idx], small[idx], large[idx]).apgr, len(test),
                                  rounds)
        report = evaluate_router(s, small, large)
        order = np.argsort(-s, kind="stable")
        gain = (large.astype(float) - small.astype(float))[order]
        gap = large.mean() - small.mean()
        curves[name] = (np.arange(len(s) + 1) / len(s), np.concatenate([[0.0], np.cumsum(gain)]) / len(s) / gap)
        half[name] = report.share_for_pgr50
    return RouteLLMQuality(n=len(test), apgr=apgr, curves=curves, share_for_pgr50=half)
