"""A small attend-compare-aggregate network over MiniLM token vectors (decomposable attention).

Where the token features (``token_features.py``) summarise the alignment with fixed statistics, this
network learns it: each word-piece of one question attends to the other question's pieces, the
piece and what it aligned to are compared by a learned layer, and the comparisons are pooled (mean
and max) on both sides; the two sides are combined symmetrically with the sentence cosine. Inputs
per piece: its unit MiniLM vector, its IDF and whether its id occurs in the other question.
Trained with torch by ``train_alignment.py``; served here with numpy only. Measured in docs/cache.md.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from app.caching.token_features import Idf, TokenView

MAX_PIECES = 64
INPUT_DIM = 386
LAYERS = ("f", "g", "h", "o")


def piece_inputs(view: TokenView, other: TokenView, idf: Idf) -> np.ndarray:
    """(pieces, INPUT_DIM): unit vector | IDF / 10 | id occurs in the other question."""
    ids, vecs = view.ids[:MAX_PIECES], view.vecs[:MAX_PIECES]
    out = np.empty((len(ids), INPUT_DIM), dtype=np.float32)
    out[:, :384] = vecs
    out[:, 384] = idf(ids) / 10.0
    out[:, 385] = np.isin(ids, other.ids)
    return out


def _relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0.0)


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


class AlignmentNet:
    """numpy inference of one trained network; arrays ``{prefix}{layer}_w`` (in, out) and ``_b``."""

    def __init__(self, arrays: Mapping[str, np.ndarray], prefix: str) -> None:
        """Raises KeyError / ValueError on a malformed artifact."""
        self.w = {k: np.asarray(arrays[f"{prefix}{k}_w"], dtype=np.float32) for k in LAYERS}
        self.b = {k: np.asarray(arrays[f"{prefix}{k}_b"], dtype=np.float32) for k in LAYERS}
        if self.w["f"].shape[0] != INPUT_DIM or self.w["o"].shape[1] != 1:
            raise ValueError("alignment network shapes do not match its inputs")

    def _side(self, ha: np.ndarray, hb: np.ndarray) -> np.ndarray:
        beta = _softmax(ha @ hb.T) @ hb
        c = _relu(np.concatenate([ha, beta, ha - beta, ha * beta], axis=1) @ self.w["g"] + self.b["g"])
        return np.concatenate([c.mean(axis=0), c.max(axis=0)])

    def predict_one(self, xa: np.ndarray, xb: np.ndarray, cosine: float) -> float:
        """P(same) for one pair of piece-input matrices."""
        if len(xa) == 0 or len(xb) == 0:
            return 0.0
        ha = _relu(xa @ self.w["f"] + self.b["f"])
        hb = _relu(xb @ self.w["f"] + self.b["f"])
        va, vb = self._side(ha, hb), self._side(hb, ha)
        z = np.concatenate([va + vb, np.abs(va - vb), [cosine]]).astype(np.float32)
        logit = float((_relu(z @ self.w["h"] + self.b["h"]) @ self.w["o"] + self.b["o"])[0])
        return float(1.0 / (1.0 + np.exp(-np.clip(logit, -60.0, 60.0))))


def alignment_proba(nets: list[AlignmentNet], vq: list[TokenView], vc: list[TokenView], cosine: np.ndarray,
                    idf: Idf) -> np.ndarray:
    """Mean P(same) of the networks for each (query, cached) pair."""
    out = np.zeros(len(vq), dtype=np.float64)
    for i, (q, c) in enumerate(zip(vq, vc, strict=True)):
        xq, xc = piece_inputs(q, c, idf), piece_inputs(c, q, idf)
        out[i] = np.mean([n.predict_one(xq, xc, float(cosine[i])) for n in nets])
    return out
