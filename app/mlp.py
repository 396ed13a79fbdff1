"""A small MLP (or logistic regression) in numpy: the runtime of the router and cache-verifier artifacts.

Artifacts store standardisation (``mean``, ``scale``) and ``layers`` (weight, bias) as JSON; hidden
layers use ReLU, the output a sigmoid. Training happens in scikit-learn; serving needs only numpy.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np


class NumpyMLP:
    def __init__(self, artifact: dict[str, Any]) -> None:
        """Raises KeyError / TypeError / ValueError on a malformed artifact."""
        self.mean = np.asarray(artifact["mean"], dtype=np.float32)
        self.scale = np.asarray(artifact["scale"], dtype=np.float32)
        self.layers = [(np.asarray(layer["weight"], dtype=np.float32), np.asarray(layer["bias"], dtype=np.float32))
                       for layer in artifact["layers"]]
        if self.layers[0][0].shape[0] != self.mean.shape[0]:
            raise ValueError("weight shapes do not match the feature size")

    def predict(self, x: np.ndarray) -> np.ndarray:
        """P(positive) for a feature matrix (n, d)."""
        h = (x - self.mean) / self.scale
        for i, (weight, bias) in enumerate(self.layers):
            h = h @ weight + bias
            if i < len(self.layers) - 1:
                h = np.maximum(h, 0.0)
        return 1.0 / (1.0 + np.exp(-np.clip(h[:, 0], -60.0, 60.0)))


def rounded(obj: Any) -> Any:
    """Floats to 6 significant digits: a smaller JSON artifact, the same decisions."""
    if isinstance(obj, float):
        return float(f"{obj:.6g}")
    if isinstance(obj, list):
        return [rounded(v) for v in obj]
    if isinstance(obj, dict):
        return {k: rounded(v) for k, v in obj.items()}
    return obj


class ArtifactUnavailable(RuntimeError):
    """A model artifact is missing, unreadable, or was trained with other features than this code."""


class MLPArtifact:
    """A versioned JSON artifact: threshold + metadata + NumpyMLP, checked against this code's features.

    Subclasses set ``kind`` (for messages), ``default_path``, ``features_key`` / ``features`` and
    ``unavailable`` (the error type raised).
    """

    kind = "model"
    default_path: Path
    features_key = "features"
    features: ClassVar[list[str]] = []
    unavailable: type[ArtifactUnavailable] = ArtifactUnavailable

    def __init__(self, artifact: dict[str, Any]) -> None:
        try:
            self.version: str = artifact["version"]
            self.threshold: float = float(artifact["threshold"])
            self.model = NumpyMLP(artifact)
            self.metadata: dict[str, Any] = artifact.get("metadata", {})
        except (KeyError, TypeError, ValueError) as exc:
            raise self.unavailable(f"{self.kind} artifact is malformed: {exc}") from exc
        if artifact.get(self.features_key) != self.features:
            raise self.unavailable(f"{self.kind} artifact was trained with other features; retrain it")

    @classmethod
    def load(cls, path: str | Path | None = None) -> Self:
        target = Path(path) if path else cls.default_path
        try:
            artifact = json.loads(target.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise cls.unavailable(f"cannot read {cls.kind} artifact {target.name}: {exc}") from exc
        return cls(artifact)
