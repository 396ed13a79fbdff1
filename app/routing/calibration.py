"""Operating points from calibration scores, and bootstrap confidence intervals.

``threshold_for_share`` turns "send X % of traffic to the large pool" into a score threshold using
scores of calibration prompts stored in the artifact (or recomputed on your own request log): on
those prompts the threshold sends exactly round(X * n) of n to the large pool.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np


def threshold_for_share(calibration_scores: Sequence[float], share: float) -> float:
    """The lowest threshold that sends about ``share`` of the calibration prompts to the large pool.

    score >= threshold -> large. share 0 -> above every score; share 1 -> the lowest score.
    """
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"large_share must be in [0, 1], got {share}")
    ranked = np.sort(np.asarray(calibration_scores, dtype=np.float64))[::-1]
    if len(ranked) == 0:
        raise ValueError("no calibration scores")
    k = round(share * len(ranked))
    if k == 0:
        return float(np.nextafter(ranked[0], np.inf))
    if k < len(ranked) and ranked[k] == ranked[k - 1]:  # ties: stay under the requested share
        return float(np.nextafter(ranked[k - 1], np.inf))
    return float(ranked[k - 1])


def share_at(calibration_scores: Sequence[float], threshold: float) -> float:
    """The share of calibration prompts a threshold sends to the large pool."""
    return float(np.mean(np.asarray(calibration_scores) >= threshold))


def best_accuracy_threshold(scores: np.ndarray, labels: np.ndarray) -> float:
    """The threshold with the highest accuracy of (score >= t) == label (midpoints between scores)."""
    s = np.unique(np.asarray(scores, dtype=np.float64))
    candidates = np.concatenate([[s[0] - 1e-9], (s[1:] + s[:-1]) / 2, [s[-1] + 1e-9]])
    acc = [np.mean((scores >= t) == labels) for t in candidates]
    return float(candidates[int(np.argmax(acc))])


def bootstrap_ci(stat: Callable[[np.ndarray], float], n: int, rounds: int = 1000, seed: int = 0,
                 groups: Sequence[str] | None = None, level: float = 0.95) -> tuple[float, float, float]:
    """(point estimate, low, high): ``stat(indices)`` over ``rounds`` resamples of ``n`` items.

    With ``groups``, whole groups are resampled (e.g. both turns of one conversation together).
    """
    rng = np.random.default_rng(seed)
    point = float(stat(np.arange(n)))
    if groups is None:
        draws = [stat(rng.integers(0, n, n)) for _ in range(rounds)]
    else:
        by_group: dict[str, list[int]] = {}
        for i, g in enumerate(groups):
            by_group.setdefault(g, []).append(i)
        blocks = [np.asarray(v) for v in by_group.values()]
        draws = [stat(np.concatenate([blocks[j] for j in rng.integers(0, len(blocks), len(blocks))]))
                 for _ in range(rounds)]
    lo, hi = np.nanquantile(np.asarray(draws, dtype=np.float64), [(1 - level) / 2, 1 - (1 - level) / 2])
    return point, float(lo), float(hi)
