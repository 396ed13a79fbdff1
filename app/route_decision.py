"""Turn a classifier score into a pool choice, falling back to the default pool on any failure."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from app.config import RouterConfig


class Classifier(Protocol):
    threshold: float

    def score(self, text: str, embedding: np.ndarray) -> float: ...


@dataclass(slots=True)
class RouteDecision:
    pool: str
    score: float | None
    embedding: np.ndarray | None
    reason: str  # "classifier" | "no-classifier" | "no-embedding" | "classifier-error" | "not-routed"


def route_threshold(clf: Classifier, cfg: RouterConfig, large_share: float | None = None) -> float:
    """The operating point: a per-request (tenant) ``large_share``, else ``cfg.threshold``, else
    ``cfg.large_share``, else the artifact's threshold. Shares map to thresholds on the artifact's
    calibration scores (``RouterClassifier.threshold_for_share``)."""
    if large_share is not None:
        return float(clf.threshold_for_share(large_share))  # type: ignore[attr-defined]
    if cfg.threshold is not None:
        return cfg.threshold
    if cfg.large_share is not None:
        return float(clf.threshold_for_share(cfg.large_share))  # type: ignore[attr-defined]
    return clf.threshold


def decide_route(clf: Classifier | None, text: str, embedding: np.ndarray | None, cfg: RouterConfig,
                 large_share: float | None = None, turns: int = 1) -> RouteDecision:
    """score >= threshold -> large pool, else small pool; any failure -> cfg.default_pool.

    ``large_share``: a per-tenant operating point; ``turns``: user turns in the conversation so far.
    """
    if clf is None:
        return RouteDecision(cfg.default_pool, None, embedding, "no-classifier")
    if embedding is None:
        return RouteDecision(cfg.default_pool, None, embedding, "no-embedding")
    try:
        score = float(clf.score(text, embedding) if turns <= 1 else clf.score(text, embedding, turns=turns))
        threshold = route_threshold(clf, cfg, large_share)
    except Exception:
        return RouteDecision(cfg.default_pool, None, embedding, "classifier-error")
    pool = cfg.large_pool if score >= threshold else cfg.small_pool
    return RouteDecision(pool, score, embedding, "classifier")


def route_headers(decision: RouteDecision | None, pool: str, model: str) -> dict[str, Any]:
    headers = {"x-llmgw-route": pool, "x-llmgw-model": model}
    if decision is not None and decision.score is not None:
        headers["x-llmgw-route-score"] = f"{decision.score:.4f}"
    return headers


def embedding_only(decision: RouteDecision) -> RouteDecision | None:
    """Keep the embedding of an explicit-model request, drop the (unused) routing verdict."""
    if decision.embedding is None:
        return None
    return RouteDecision(decision.pool, None, decision.embedding, "not-routed")


MEMO_MAX_TEXT = 4000  # longer prompts are not remembered (memory); the router embeds its first 4000 chars


def memoizable(text: str, decision: RouteDecision) -> bool:
    """Only a full verdict is remembered: an embedding and a classifier (or explicit-model) outcome.

    Fallbacks (no classifier, embedding or classifier errors) are asked again next time.
    """
    return len(text) <= MEMO_MAX_TEXT and decision.embedding is not None and decision.reason in (
        "classifier", "not-routed")
