"""Gradient-boosted trees in numpy: the runtime of a scikit-learn HistGradientBoostingClassifier.

Training happens in scikit-learn; ``export_hgb`` flattens the fitted trees into arrays (stored in
the verifier artifact) and ``TreeEnsemble.predict`` walks all trees at once, one level per step.
"""

from __future__ import annotations

from typing import Any

import numpy as np

FIELDS = ("feature", "threshold", "left", "right", "leaf", "value", "missing_left")


def export_hgb(model: Any) -> dict[str, np.ndarray]:
    """Flatten a fitted binary HistGradientBoostingClassifier (numeric features only) into arrays."""
    parts: dict[str, list[np.ndarray]] = {f: [] for f in FIELDS}
    roots, offset = [], 0
    for iteration in model._predictors:
        nodes = iteration[0].nodes
        if nodes["is_categorical"].any():
            raise ValueError("categorical splits are not supported")
        roots.append(offset)
        parts["feature"].append(nodes["feature_idx"].astype(np.int32))
        parts["threshold"].append(nodes["num_threshold"].astype(np.float64))
        parts["left"].append(nodes["left"].astype(np.int32) + offset)
        parts["right"].append(nodes["right"].astype(np.int32) + offset)
        parts["leaf"].append(nodes["is_leaf"].astype(bool))
        parts["value"].append(nodes["value"].astype(np.float64))
        parts["missing_left"].append(nodes["missing_go_to_left"].astype(bool))
        offset += len(nodes)
    out = {f: np.concatenate(v) for f, v in parts.items()}
    out["roots"] = np.asarray(roots, dtype=np.int32)
    out["baseline"] = np.asarray([float(np.ravel(model._baseline_prediction)[0])])
    return out


class TreeEnsemble:
    def __init__(self, arrays: dict[str, np.ndarray]) -> None:
        """Raises KeyError / ValueError on malformed arrays."""
        self.feature = np.asarray(arrays["feature"], dtype=np.int64)
        self.threshold = np.asarray(arrays["threshold"], dtype=np.float64)
        self.left = np.asarray(arrays["left"], dtype=np.int64)
        self.right = np.asarray(arrays["right"], dtype=np.int64)
        self.leaf = np.asarray(arrays["leaf"], dtype=bool)
        self.value = np.asarray(arrays["value"], dtype=np.float64)
        self.missing_left = np.asarray(arrays["missing_left"], dtype=bool)
        self.roots = np.asarray(arrays["roots"], dtype=np.int64)
        self.baseline = float(np.ravel(arrays["baseline"])[0])
        if not len(self.feature) == len(self.threshold) == len(self.left) == len(self.leaf):
            raise ValueError("tree arrays differ in length")

    def raw(self, x: np.ndarray) -> np.ndarray:
        """Sum of leaf values + baseline for each row of x (n, d)."""
        x = np.asarray(x, dtype=np.float64)
        rows = np.arange(x.shape[0])[:, None]
        node = np.broadcast_to(self.roots, (x.shape[0], len(self.roots))).copy()
        while True:
            inner = ~self.leaf[node]
            if not inner.any():
                break
            values = x[rows, np.where(inner, self.feature[node], 0)]
            go_left = np.where(np.isnan(values), self.missing_left[node], values <= self.threshold[node])
            node = np.where(inner, np.where(go_left, self.left[node], self.right[node]), node)
        return self.baseline + self.value[node].sum(axis=1)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """P(positive) for each row."""
        return 1.0 / (1.0 + np.exp(-self.raw(x)))
