"""Approximate nearest-neighbour index over entry embeddings, one usearch HNSW graph per scope.

usearch: a single small wheel with no BLAS/torch dependency, HNSW with cosine metric, f16
storage (half the memory of faiss' flat f32), removal of keys (needed for TTL and eviction) and
sub-millisecond search at 1M vectors. One index per scope (tenant x model x system prompt) means a
search never even sees another tenant's vectors.
"""

from __future__ import annotations

import threading

import numpy as np

import app.embedding_onnx  # noqa: F401  loads onnxruntime first: usearch 2.26 then ORT 1.31 segfaults on import

# isort: split
from usearch.index import Index

from app.embedding import EMBEDDING_DIM


class ScopedIndex:
    """scope -> usearch Index; integer keys are entry ids."""

    def __init__(self, dim: int = EMBEDDING_DIM, dtype: str = "f16", connectivity: int = 16,
                 expansion_search: int | None = None) -> None:
        self.dim, self.dtype, self.connectivity = dim, dtype, connectivity
        self.expansion_search = expansion_search  # None: usearch's default
        self._indexes: dict[str, Index] = {}
        self._lock = threading.Lock()

    def _index(self, scope: str) -> Index:
        index = self._indexes.get(scope)
        if index is None:
            extra = {} if self.expansion_search is None else {"expansion_search": self.expansion_search}
            index = Index(ndim=self.dim, metric="cos", dtype=self.dtype, connectivity=self.connectivity, **extra)
            self._indexes[scope] = index
        return index

    def add(self, scope: str, key: int, vector: np.ndarray) -> None:
        with self._lock:
            self._index(scope).add(key, np.asarray(vector, dtype=np.float32))

    def add_many(self, scope: str, keys: np.ndarray, vectors: np.ndarray, threads: int = 0) -> None:
        """``threads``: usearch's insert threads (0: all cores; the cache rebuild uses 1 to leave cores
        to serving, and for small batches it is faster too: thread start-up dominates)."""
        with self._lock:
            self._index(scope).add(keys, np.asarray(vectors, dtype=np.float32), threads=threads)

    def remove(self, scope: str, key: int) -> None:
        with self._lock:
            index = self._indexes.get(scope)
            if index is not None and key in index:
                index.remove(key)

    def drop_scope(self, scope: str) -> None:
        with self._lock:
            self._indexes.pop(scope, None)

    def search(self, scope: str, vector: np.ndarray, k: int = 4) -> list[tuple[int, float]]:
        """Up to k (key, cosine similarity) pairs, most similar first."""
        index = self._indexes.get(scope)
        if index is None or len(index) == 0:
            return []
        matches = index.search(np.asarray(vector, dtype=np.float32), min(k, len(index)))
        return [(int(key), 1.0 - float(dist)) for key, dist in zip(matches.keys, matches.distances, strict=True)]

    def clear(self) -> None:
        with self._lock:
            self._indexes.clear()

    def __len__(self) -> int:
        return sum(len(i) for i in self._indexes.values())
