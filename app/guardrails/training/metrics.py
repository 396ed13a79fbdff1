"""Threshold choice and detection rates (validation picks, test reports)."""

from __future__ import annotations

import numpy as np


def rates_at(scores: np.ndarray, labels: np.ndarray, threshold: float) -> tuple[float, float]:
    """(TPR, FPR) of ``scores >= threshold``."""
    pred = scores >= threshold
    pos, neg = labels == 1, labels == 0
    return float(pred[pos].mean()) if pos.any() else 0.0, float(pred[neg].mean()) if neg.any() else 0.0


def precision_at(scores: np.ndarray, labels: np.ndarray, threshold: float) -> float:
    pred = scores >= threshold
    return float((labels[pred] == 1).mean()) if pred.any() else 1.0


def threshold_for_fpr(scores: np.ndarray, labels: np.ndarray, target_fpr: float) -> float:
    """The lowest threshold whose FPR on these (validation) rows is at most ``target_fpr``."""
    neg = np.sort(scores[labels == 0])[::-1]
    k = int(np.floor(target_fpr * len(neg)))  # at most k negatives may score >= threshold
    if k >= len(neg):
        return float(neg[-1])
    return float(np.nextafter(neg[k], np.float32(1.0)))


def flip_rate(classifier, split, suffixes: list[str], sep: str = " ") -> float:
    """Share of (detected injection, suffix) pairs no longer detected once the suffix is appended."""
    from app.guardrails.training.data import embed_cached

    texts = [t for t, y in zip(split.texts, split.labels, strict=True) if y == 1]
    scores = classifier.score_texts(texts, embed_cached(texts, split.name + "-pos"))
    detected = [t for t, s in zip(texts, scores, strict=True) if s >= classifier.threshold]
    if not detected:
        return 0.0
    variants = [t.rstrip() + sep + s for t in detected for s in suffixes]
    v_scores = classifier.score_texts(variants, embed_cached(variants, split.name + "-suffixed"))
    return float((v_scores < classifier.threshold).mean())
