"""The injection pre-screen: a cheap model (n-grams + pattern hits, no embedding) that clears plainly benign text.

The full classifier needs a MiniLM pass of every segment (11-15 ms of CPU on the hot path). The pre-screen
scores the same hashed n-grams and pattern hits the full classifier computes anyway, with weights of its own
(``app.guardrails.training.train_prescreen``); a text whose every segment scores below the pre-screen's
threshold is cleared without the embedding. The threshold is chosen on validation so that at most a fixed,
small share of the injections the full classifier detects is cleared (the artifact's metadata holds it and
the held-out figures); ``guardrails.input.injection.prescreen: false`` gives the exact path.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from app.guardrails.injection_features import FEATURE_SPEC, ngram_counts, pattern_vector
from app.guardrails.npz_artifact import read_npz, write_npz
from app.mlp import ArtifactUnavailable

DEFAULT_PRESCREEN = Path(__file__).resolve().parent / "artifacts" / "injection-prescreen-v1.npz"
_ARRAYS = ("ngram_weight", "pattern_weight", "bias")


@dataclass(frozen=True)
class SegmentFeatures:
    """One segment's cheap features, computed once and shared by the pre-screen and the full classifier."""

    ngram_idx: np.ndarray
    ngram_val: np.ndarray
    patterns: np.ndarray

    @classmethod
    def of(cls, text: str) -> SegmentFeatures:
        idx, val = ngram_counts(text)
        return cls(idx, val, pattern_vector(text))

    def logit(self, w_ngram: np.ndarray, w_pat: np.ndarray) -> float:
        return float(self.ngram_val @ w_ngram[self.ngram_idx]) + float(self.patterns @ w_pat)


class Prescreen:
    """``cleared_score(features)``: a score when every segment's pre-screen logit is below ``threshold``."""

    def __init__(self, arrays: dict[str, np.ndarray], header: dict[str, Any]) -> None:
        try:
            self.version: str = header["version"]
            self.threshold: float = float(header["threshold"])
            self.metadata: dict[str, Any] = header.get("metadata", {})
            self.classifier: str | None = header.get("classifier")  # the classifier version it was chosen for
            self.w_ngram = np.asarray(arrays["ngram_weight"], dtype=np.float32)
            self.w_pat = np.asarray(arrays["pattern_weight"], dtype=np.float32)
            self.bias = float(np.asarray(arrays["bias"]).reshape(-1)[0])
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise ArtifactUnavailable(f"pre-screen artifact is malformed: {exc}") from exc
        if header.get("features") != FEATURE_SPEC:
            raise ArtifactUnavailable("pre-screen artifact was trained with other features; retrain it")
        if self.w_ngram.shape[0] != FEATURE_SPEC["ngram_dim"] or self.w_pat.shape[0] != len(FEATURE_SPEC["patterns"]):
            raise ArtifactUnavailable("pre-screen weight shapes do not match the features")

    @classmethod
    def load(cls, path: str | Path | None = None) -> Prescreen:
        header, arrays = read_npz(Path(path) if path else DEFAULT_PRESCREEN, _ARRAYS, "pre-screen")
        return cls(arrays, header)

    @property
    def probability_at_threshold(self) -> float:
        """The highest score a cleared text can get (must stay below the classifier's threshold)."""
        return float(1.0 / (1.0 + np.exp(-self.threshold)))

    def logits(self, features: list[SegmentFeatures]) -> np.ndarray:
        return np.asarray([f.logit(self.w_ngram, self.w_pat) + self.bias for f in features], dtype=np.float64)

    def cleared_score(self, features: list[SegmentFeatures]) -> float | None:
        """The pre-screen's own P(injection) (max over segments) if it clears the text, else None."""
        if not features:
            return None
        top = float(self.logits(features).max())
        return float(1.0 / (1.0 + np.exp(-max(top, -60.0)))) if top < self.threshold else None


def save_prescreen(path: Path, arrays: dict[str, np.ndarray], header: dict[str, Any]) -> None:
    write_npz(path, _ARRAYS, arrays, header)
