"""Semantic-hit verifier: a pair classifier deciding whether a cached answer may be served.

Numpy-only inference from a versioned JSON artifact trained by ``llmgw cache train-verifier``
on Quora Question Pairs (see docs/cache.md for the measured precision / hit-rate trade-off).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from app.caching.pair_features import HAND_FEATURES, hard_veto, pair_features
from app.mlp import ArtifactUnavailable, MLPArtifact

DEFAULT_ARTIFACT = Path(__file__).resolve().parent / "artifacts" / "verifier-v1.json"


class VerifierUnavailable(ArtifactUnavailable):
    pass


class PairVerifier(MLPArtifact):
    kind = "verifier"
    default_path = DEFAULT_ARTIFACT
    features_key = "hand_features"
    features = HAND_FEATURES
    unavailable = VerifierUnavailable

    def proba_features(self, x: np.ndarray) -> np.ndarray:
        return self.model.predict(x)

    def proba(self, query: str, cached: str, eq: np.ndarray, ec: np.ndarray) -> float:
        """P(the cached question asks the same thing as the query)."""
        return float(self.proba_features(pair_features(query, cached, eq, ec)[None, :])[0])

    def accept(self, query: str, cached: str, eq: np.ndarray, ec: np.ndarray, threshold: float | None = None) -> bool:
        """Serve ``cached``'s answer to ``query``? Hard vetoes first, then the learned probability."""
        if hard_veto(query, cached) is not None:
            return False
        return self.proba(query, cached, eq, ec) >= (self.threshold if threshold is None else threshold)
