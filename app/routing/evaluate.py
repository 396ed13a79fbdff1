"""Quality/cost curve of a router: share of large calls vs accuracy, PGR and APGR (RouteLLM's metrics)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class CurvePoint:
    threshold: float
    large_share: float
    accuracy: float
    pgr: float


@dataclass
class RouterReport:
    acc_small: float
    acc_large: float
    apgr: float
    share_for_pgr50: float
    share_for_pgr80: float
    points: list[CurvePoint]


def routed_accuracy(scores: np.ndarray, small_ok: np.ndarray, large_ok: np.ndarray, threshold: float) -> tuple:
    to_large = scores >= threshold
    acc = float(np.where(to_large, large_ok, small_ok).mean())
    return float(to_large.mean()), acc


def evaluate_router(scores: np.ndarray, small_ok: np.ndarray, large_ok: np.ndarray, n_points: int = 21) -> RouterReport:
    """Sweep every threshold: PGR(share) curve, its area (APGR; random = 0.5) and the share for 50%/80% PGR."""
    scores = np.asarray(scores, dtype=np.float64)
    small_ok = np.asarray(small_ok, dtype=np.float64)
    large_ok = np.asarray(large_ok, dtype=np.float64)
    acc_small, acc_large = float(small_ok.mean()), float(large_ok.mean())
    gap = acc_large - acc_small
    order = np.argsort(-scores, kind="stable")  # route the highest scores to large first
    gain = (large_ok - small_ok)[order]
    n = len(scores)
    shares = np.arange(n + 1) / n
    accs = acc_small + np.concatenate([[0.0], np.cumsum(gain)]) / n
    pgr = (accs - acc_small) / gap if gap > 0 else np.zeros_like(accs)
    apgr = float(np.sum((pgr[1:] + pgr[:-1]) / 2) / n)

    def share_for(target: float) -> float:
        hit = np.nonzero(pgr >= target)[0]
        return float(shares[hit[0]]) if len(hit) else 1.0

    points = []
    for q in np.linspace(0, 1, n_points):
        threshold = float(np.quantile(scores, 1 - q)) if 0 < q < 1 else (float("inf") if q == 0 else float("-inf"))
        share, acc = routed_accuracy(scores, small_ok, large_ok, threshold)
        points.append(CurvePoint(threshold, share, acc, (acc - acc_small) / gap if gap > 0 else 0.0))
    return RouterReport(acc_small, acc_large, apgr, share_for(0.5), share_for(0.8), points)


def threshold_for_share(scores: np.ndarray, share: float) -> float:
    """The score threshold that sends about ``share`` of these prompts to the large pool."""
    return float(np.quantile(np.asarray(scores), 1 - share))
