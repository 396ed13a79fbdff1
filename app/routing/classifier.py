"""Runtime router classifier: numpy-only inference from a versioned JSON artifact.

Score = P(the prompt needs the large model). v1 artifacts: one MLP over [MiniLM embedding |
structural features] trained on MMLU/GSM8K. v2 artifacts add a **blend**: a logistic model over
[that MLP's logit | task signals (``signals.py``) | embedding] fitted on open-ended labelled
prompts (MT-Bench judgements + our everyday calibration set), and the blend's out-of-fold scores
on calibration prompts so ``large_share`` maps to a threshold, and a **gate** (P(the prompt is like
MMLU/GSM8K)) that hands those prompts to the base MLP: score = g·base + (1−g)·blend.
Loading never needs scikit-learn.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from app.mlp import ArtifactUnavailable, MLPArtifact, NumpyMLP
from app.routing.calibration import threshold_for_share
from app.routing.features import FEATURE_NAMES, structural_features
from app.routing.signals import SIGNAL_NAMES, task_signals

ARTIFACT_DIR = Path(__file__).resolve().parent / "artifacts"
DEFAULT_ARTIFACT = ARTIFACT_DIR / "router-v2.json"


class RouterUnavailable(ArtifactUnavailable):
    """The artifact is missing or does not match this code."""


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


class RouterClassifier(MLPArtifact):
    kind = "router"
    default_path = DEFAULT_ARTIFACT
    features_key = "structural_features"
    features = FEATURE_NAMES
    unavailable = RouterUnavailable

    def __init__(self, artifact: dict[str, Any]) -> None:
        super().__init__(artifact)
        self.blend: NumpyMLP | None = None
        self.gate: NumpyMLP | None = None
        self.calibration_scores: list[float] = list(artifact.get("calibration_scores", []))
        if "blend" in artifact:
            if artifact.get("signal_features") != SIGNAL_NAMES:
                raise RouterUnavailable("router artifact was trained with other task signals; retrain it")
            try:
                self.blend = NumpyMLP(artifact["blend"])
                self.gate = NumpyMLP(artifact["gate"]) if "gate" in artifact else None
            except (KeyError, TypeError, ValueError) as exc:
                raise RouterUnavailable(f"router artifact blend is malformed: {exc}") from exc

    def base_features(self, texts: list[str], embeddings: np.ndarray) -> np.ndarray:
        structural = np.stack([structural_features(t) for t in texts])
        return np.hstack([np.asarray(embeddings, dtype=np.float32), structural])

    def blend_features(self, base_scores: np.ndarray, signals: np.ndarray, embeddings: np.ndarray) -> np.ndarray:
        return np.hstack([_logit(base_scores)[:, None], signals, np.asarray(embeddings, dtype=np.float32)])

    def score_features(self, x: np.ndarray) -> np.ndarray:
        """The base model's P(large needed) for a [embedding | structural] matrix (n, d)."""
        return self.model.predict(x)

    def score_many(self, texts: list[str], embeddings: np.ndarray, turns: list[int] | None = None) -> np.ndarray:
        """P(large needed) for several prompts (v1: the base model; v2: the blend)."""
        embeddings = np.atleast_2d(np.asarray(embeddings, dtype=np.float32))
        base_x = self.base_features(texts, embeddings)
        base = self.score_features(base_x)
        if self.blend is None:
            return base
        turns = turns or [1] * len(texts)
        signals = np.stack([task_signals(t, n) for t, n in zip(texts, turns, strict=True)])
        blended = self.blend.predict(self.blend_features(base, signals, embeddings))
        if self.gate is None:
            return blended
        g = self.gate.predict(base_x)  # how much the prompt looks like the base model's MMLU/GSM8K data
        return g * base + (1 - g) * blended

    def score(self, text: str, embedding: np.ndarray, turns: int = 1) -> float:
        return float(self.score_many([text], np.asarray(embedding)[None, :], [turns])[0])

    def threshold_for_share(self, share: float) -> float:
        """The threshold sending ``share`` of the artifact's calibration prompts to the large pool."""
        if not self.calibration_scores:
            raise RouterUnavailable("this router artifact has no calibration scores; set router.threshold instead")
        return threshold_for_share(self.calibration_scores, share)

    def decide(self, text: str, embedding: np.ndarray, threshold: float | None = None,
               turns: int = 1) -> tuple[str, float]:
        s = self.score(text, embedding, turns)
        return ("large" if s >= (self.threshold if threshold is None else threshold) else "small"), s
