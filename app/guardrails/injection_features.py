"""Features of the injection classifier: MiniLM embedding + hashed character n-grams + pattern hits.

Hashing is ``zlib.crc32`` of the UTF-8 n-gram modulo ``NGRAM_DIM``: the same function at training and
run time, no vocabulary to ship. N-gram counts are sublinear (log1p) and L2-normalised.
"""

from __future__ import annotations

import zlib

import numpy as np

from app.guardrails.patterns import INJECTION_PATTERNS, normalise, pattern_hits

NGRAM_DIM = 1 << 15
NGRAM_SIZES = (3, 4, 5)
MAX_FEATURE_CHARS = 4000  # n-grams and embedding see the first 4,000 characters of a segment
PATTERN_NAMES = list(INJECTION_PATTERNS)
FEATURE_SPEC = {"embedding": "all-minilm-l6-v2", "ngram_dim": NGRAM_DIM, "ngram_sizes": list(NGRAM_SIZES),
                "patterns": PATTERN_NAMES, "max_chars": MAX_FEATURE_CHARS}


def embed_input(text: str) -> str:
    """The text handed to the embedding model for one segment."""
    return text[:MAX_FEATURE_CHARS]


def ngram_counts(text: str) -> tuple[np.ndarray, np.ndarray]:
    """(hash indices, L2-normalised log1p counts) of the text's character n-grams."""
    t = f" {normalise(text[:MAX_FEATURE_CHARS])} "
    counts: dict[int, int] = {}
    data = t.encode("utf-8", "replace")
    # n-grams over UTF-8 bytes: cheap and the same everywhere
    for n in NGRAM_SIZES:
        for i in range(len(data) - n + 1):
            h = zlib.crc32(data[i:i + n]) & (NGRAM_DIM - 1)
            counts[h] = counts.get(h, 0) + 1
    if not counts:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
    idx = np.fromiter(counts.keys(), dtype=np.int64, count=len(counts))
    val = np.log1p(np.fromiter(counts.values(), dtype=np.float32, count=len(counts)))
    val /= float(np.linalg.norm(val)) or 1.0
    return idx, val


def pattern_vector(text: str) -> np.ndarray:
    hits = set(pattern_hits(text))
    return np.asarray([1.0 if name in hits else 0.0 for name in PATTERN_NAMES], dtype=np.float32)


def ngram_matrix(texts: list[str]):
    """Sparse CSR (n, NGRAM_DIM) of n-gram features (training; scipy comes with scikit-learn)."""
    from scipy.sparse import csr_matrix

    indptr, indices, values = [0], [], []
    for text in texts:
        idx, val = ngram_counts(text)
        indices.append(idx)
        values.append(val)
        indptr.append(indptr[-1] + len(idx))
    return csr_matrix((np.concatenate(values) if values else np.zeros(0, np.float32),
                       np.concatenate(indices) if indices else np.zeros(0, np.int64), np.asarray(indptr)),
                      shape=(len(texts), NGRAM_DIM), dtype=np.float32)
