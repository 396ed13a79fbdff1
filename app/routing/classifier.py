"""Runtime router classifier: numpy-only inference from a versioned JSON artifact.

Score = P(the prompt needs the large model), from a model trained by ``llmgw router train`` over
[MiniLM embedding | structural features]. Loading never needs scikit-learn.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from app.mlp import ArtifactUnavailable, MLPArtifact
from app.routing.features import FEATURE_NAMES, structural_features

ARTIFACT_DIR = Path(__file__).resolve().parent / "artifacts"
DEFAULT_ARTIFACT = ARTIFACT_DIR / "router-v1.json"


class RouterUnavailable(ArtifactUnavailable):
    """The artifact is missing or does not match this code."""


class RouterClassifier(MLPArtifact):
    kind = "router"
    default_path = DEFAULT_ARTIFACT
    features_key = "structural_features"
    features = FEATURE_NAMES
    unavailable = RouterUnavailable

    def score_features(self, x: np.ndarray) -> np.ndarray:
        """P(large needed) for a feature matrix (n, d)."""
        return self.model.predict(x)

    def score(self, text: str, embedding: np.ndarray) -> float:
        x = np.concatenate([np.asarray(embedding, dtype=np.float32), structural_features(text)])[None, :]
        return float(self.score_features(x)[0])

    def decide(self, text: str, embedding: np.ndarray, threshold: float | None = None) -> tuple[str, float]:
        s = self.score(text, embedding)
        return ("large" if s >= (self.threshold if threshold is None else threshold) else "small"), s
