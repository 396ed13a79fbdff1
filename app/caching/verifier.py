"""Semantic-hit verifier: decides whether a cached question's answer may be served for a new query.

Hard vetoes first (numbers, negation, antonyms), then an ensemble trained by ``llmgw cache
train-verifier`` on Quora Question Pairs: small MLPs over hand features + token-alignment features +
the embedding interaction (|a-b|, a*b), gradient-boosted trees over the hand + token features, and
attention networks over the token vectors (``alignment_net.py``); P(same) is the mean of the MLP and
tree families, averaged with the attention networks. numpy-only at request time (plus one MiniLM
forward pass for the token vectors of texts not seen before). Measured trade-off in docs/cache.md.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from app.caching.alignment_net import AlignmentNet, alignment_proba
from app.caching.pair_features import HAND_FEATURES, hand_features, hard_veto
from app.caching.slots import lookalike_veto
from app.caching.token_features import TOKEN_FEATURES, Idf, TokenView, encode_tokens, token_features
from app.caching.trees import FIELDS, TreeEnsemble
from app.memo import LRUMemo
from app.mlp import ArtifactUnavailable, NumpyMLP

DEFAULT_ARTIFACT = Path(__file__).resolve().parent / "artifacts" / "verifier-v3.npz"


class VerifierUnavailable(ArtifactUnavailable):
    pass


def pair_rows(queries: Sequence[str], cached: Sequence[str], eq: np.ndarray, ec: np.ndarray,
              vq: Sequence[TokenView], vc: Sequence[TokenView], idf: Idf) -> tuple[np.ndarray, np.ndarray]:
    """(tree input [hand | token], MLP input [hand | token | |eq-ec| | eq*ec]) for each pair."""
    eq, ec = np.atleast_2d(eq).astype(np.float32), np.atleast_2d(ec).astype(np.float32)
    cos = np.sum(eq * ec, axis=1)
    tree_x = np.stack([
        np.concatenate([hand_features(q, c, float(s)), token_features(a, b, idf)])
        for q, c, s, a, b in zip(queries, cached, cos, vq, vc, strict=True)
    ])
    return tree_x, np.concatenate([tree_x, np.abs(eq - ec), eq * ec], axis=1)


class PairVerifier:
    """The shipped ensemble verifier (artifact: a compressed .npz with a JSON ``meta`` entry)."""

    kind = "verifier"

    def __init__(self, arrays: Mapping[str, np.ndarray], view_cache_size: int = 4096) -> None:
        try:
            meta = json.loads(str(arrays["meta"]))
            self.version: str = meta["version"]
            self.threshold: float = float(meta["threshold"])
            self.similarity_gate: float = float(meta.get("similarity_gate", 0.80))
            self.metadata: dict[str, Any] = meta.get("metadata", {})
            self.idf = Idf(arrays["idf"])
            self.mlps = [NumpyMLP({"mean": arrays[f"mlp{i}_mean"], "scale": arrays[f"mlp{i}_scale"],
                                   "layers": [{"weight": arrays[f"mlp{i}_w{k}"], "bias": arrays[f"mlp{i}_b{k}"]}
                                              for k in range(int(meta["mlp_layers"]))]})
                         for i in range(int(meta["n_mlp"]))]
            self.trees = [TreeEnsemble({f: arrays[f"hgb{j}_{f}"] for f in (*FIELDS, "roots", "baseline")})
                          for j in range(int(meta["n_hgb"]))]
            self.aligners = [AlignmentNet(arrays, f"att{i}_") for i in range(int(meta.get("n_att", 0)))]
        except (KeyError, TypeError, ValueError) as exc:
            raise VerifierUnavailable(f"verifier artifact is malformed: {exc}") from exc
        if meta.get("hand_features") != HAND_FEATURES or meta.get("token_features") != TOKEN_FEATURES:
            raise VerifierUnavailable("verifier artifact was trained with other features; retrain it")
        if not self.mlps or not self.trees:
            raise VerifierUnavailable("verifier artifact has no models")
        self._views: LRUMemo[TokenView] = LRUMemo(view_cache_size)
        self._lock = threading.Lock()  # lookups verify in worker threads

    @classmethod
    def load(cls, path: str | Path | None = None) -> PairVerifier:
        target = Path(path) if path else DEFAULT_ARTIFACT
        try:
            with np.load(target, allow_pickle=False) as data:
                arrays = {k: data[k] for k in data.files}
        except (OSError, ValueError) as exc:
            raise VerifierUnavailable(f"cannot read verifier artifact {target.name}: {exc}") from exc
        return cls(arrays)

    def warm_up(self) -> None:
        """Load the MiniLM model and run it once, so the first real lookup does not pay for it (~1-5 s)."""
        encode_tokens(["How do I warm up the cache verifier?", "Warm-up"])

    def proba_rows(self, tree_x: np.ndarray, mlp_x: np.ndarray, aligned: np.ndarray | None = None) -> np.ndarray:
        """Combine the families; ``aligned``: the attention networks' P(same), when the artifact has them."""
        mlp = np.mean([m.predict(mlp_x) for m in self.mlps], axis=0)
        trees = np.mean([t.predict(tree_x) for t in self.trees], axis=0)
        base = (mlp + trees) / 2
        return base if aligned is None else (base + aligned) / 2

    def aligned_proba(self, vq: Sequence[TokenView], vc: Sequence[TokenView], cosine: np.ndarray) -> np.ndarray | None:
        """The attention networks' mean P(same) per pair (None when the artifact has none)."""
        return alignment_proba(self.aligners, list(vq), list(vc), cosine, self.idf) if self.aligners else None

    def token_views(self, texts: Sequence[str]) -> list[TokenView]:
        """Token views, from a small LRU (cached questions are verified again and again)."""
        with self._lock:
            known = {t: v for t in dict.fromkeys(texts) if (v := self._views.get(t)) is not None}
        missing = [t for t in dict.fromkeys(texts) if t not in known]
        if missing:
            fresh = dict(zip(missing, encode_tokens(missing), strict=True))
            with self._lock:
                for text, view in fresh.items():
                    self._views.put(text, view)
            known.update(fresh)
        return [known[t] for t in texts]

    def proba_pairs(self, queries: Sequence[str], cached: Sequence[str], eq: np.ndarray, ec: np.ndarray,
                    views: Mapping[str, TokenView] | None = None) -> np.ndarray:
        """P(same) for each (query, cached) pair, before vetoes. ``views``: precomputed token views."""
        if views is None:
            found = self.token_views([*queries, *cached])
            vq, vc = found[:len(queries)], found[len(queries):]
        else:
            vq, vc = [views[t] for t in queries], [views[t] for t in cached]
        cosine = np.sum(np.atleast_2d(eq) * np.atleast_2d(ec), axis=1)
        return self.proba_rows(*pair_rows(queries, cached, eq, ec, vq, vc, self.idf),
                               self.aligned_proba(vq, vc, cosine))

    def proba(self, query: str, cached: str, eq: np.ndarray, ec: np.ndarray) -> float:
        """P(the cached question asks the same thing as the query)."""
        return float(self.proba_pairs([query], [cached], eq, ec)[0])

    def accept_many(self, query: str, cached: Sequence[str], eq: np.ndarray, ec: Sequence[np.ndarray],
                    threshold: float | None = None, slot_veto: bool = False) -> list[bool]:
        """``accept`` for several candidates of one query, with one model forward for all new texts.

        ``slot_veto``: also refuse look-alike edits (``slots.py``: one swapped slot, reordered words, another
        time: "reset my password" / "reset my username").
        """
        limit = self.threshold if threshold is None else threshold
        open_ = [i for i, c in enumerate(cached) if hard_veto(query, c) is None]
        if slot_veto and open_:
            views = self.token_views([query, *[cached[i] for i in open_]])
            open_ = [i for i, v in zip(open_, views[1:], strict=True)
                     if not lookalike_veto(query, cached[i], views[0], v)]
        out = [False] * len(cached)
        if open_:
            proba = self.proba_pairs([query] * len(open_), [cached[i] for i in open_],
                                     np.repeat(np.atleast_2d(eq), len(open_), axis=0), np.stack([ec[i] for i in open_]))
            for i, p in zip(open_, proba, strict=True):
                out[i] = bool(p >= limit)
        return out

    def accept(self, query: str, cached: str, eq: np.ndarray, ec: np.ndarray, threshold: float | None = None) -> bool:
        """Serve ``cached``'s answer to ``query``? Hard vetoes first, then the learned probability."""
        if hard_veto(query, cached) is not None:
            return False
        return self.proba(query, cached, eq, ec) >= (self.threshold if threshold is None else threshold)
