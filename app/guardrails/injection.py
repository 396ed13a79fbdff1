"""Runtime injection/jailbreak classifier: numpy only, loaded from a committed ``.npz`` artifact.

score = sigmoid(w_e · embedding + w_n · ngrams + w_p · patterns + b), trained by
``app.guardrails.training.train_injection``. The artifact is saved and loaded with ``allow_pickle=False``;
its JSON header names the features it was trained with, checked against this code's.
A prompt is scored as a whole and sentence by sentence (``segments``): the maximum counts, so a harmless
sentence appended to an injection cannot dilute it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from app.guardrails.injection_features import FEATURE_SPEC, embed_input
from app.guardrails.npz_artifact import read_npz, write_npz
from app.guardrails.prescreen import Prescreen, SegmentFeatures
from app.mlp import ArtifactUnavailable

ARTIFACT_DIR = Path(__file__).resolve().parent / "artifacts"
DEFAULT_ARTIFACT = ARTIFACT_DIR / "injection-v1.npz"
_ARRAYS = ("embedding_weight", "ngram_weight", "pattern_weight", "bias")
_SENTENCE = re.compile(r"(?<=[.!?;:])\s+|\n+")
MAX_SEGMENTS = 16
MIN_SEGMENT_CHARS = 12


class InjectionModelUnavailable(ArtifactUnavailable):
    """The injection artifact is missing, malformed or was trained with other features."""


def segments(text: str, max_segments: int = MAX_SEGMENTS) -> list[str]:
    """The whole text, then its sentences/lines (if more than one), at most ``max_segments`` in all.

    Beyond the cap the first and the last sentences are kept (injections sit at either end).
    """
    parts = [p.strip() for p in _SENTENCE.split(text) if len(p.strip()) >= MIN_SEGMENT_CHARS]
    if len(parts) <= 1:
        return [text]
    room = max_segments - 1
    if len(parts) > room:
        parts = parts[: room // 2] + parts[-(room - room // 2):]
    return [text, *parts]


class InjectionClassifier:
    def __init__(self, arrays: dict[str, np.ndarray], header: dict[str, Any]) -> None:
        try:
            self.version: str = header["version"]
            self.threshold: float = float(header["threshold"])
            self.metadata: dict[str, Any] = header.get("metadata", {})
            self.w_emb = np.asarray(arrays["embedding_weight"], dtype=np.float32)
            self.w_ngram = np.asarray(arrays["ngram_weight"], dtype=np.float32)
            self.w_pat = np.asarray(arrays["pattern_weight"], dtype=np.float32)
            self.bias = float(np.asarray(arrays["bias"]).reshape(-1)[0])
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise InjectionModelUnavailable(f"injection artifact is malformed: {exc}") from exc
        if header.get("features") != FEATURE_SPEC:
            raise InjectionModelUnavailable("injection artifact was trained with other features; retrain it")
        if (self.w_ngram.shape[0] != FEATURE_SPEC["ngram_dim"] or self.w_pat.shape[0] != len(FEATURE_SPEC["patterns"])
                or self.w_emb.shape[0] != 384):
            raise InjectionModelUnavailable("injection artifact weight shapes do not match the features")

    @classmethod
    def load(cls, path: str | Path | None = None) -> InjectionClassifier:
        header, arrays = read_npz(Path(path) if path else DEFAULT_ARTIFACT, _ARRAYS, "injection",
                                  InjectionModelUnavailable)
        return cls(arrays, header)

    def score_texts(self, texts: Sequence[str], embeddings: np.ndarray,
                    features: Sequence[SegmentFeatures] | None = None) -> np.ndarray:
        """P(injection) of each text as a whole, given its MiniLM vector (n, 384) (and its cheap features)."""
        feats = features if features is not None else [SegmentFeatures.of(t) for t in texts]
        emb = np.asarray(embeddings, dtype=np.float32).reshape(len(texts), -1)
        logits = emb @ self.w_emb + self.bias
        for i, f in enumerate(feats):
            logits[i] += f.logit(self.w_ngram, self.w_pat)
        return 1.0 / (1.0 + np.exp(-np.clip(logits, -60.0, 60.0)))

    def score_prompt(self, text: str, embed: Callable[[list[str]], np.ndarray],
                     prescreen: Prescreen | None = None) -> tuple[float, bool]:
        """(max P(injection) over the text and its sentences, cleared by the pre-screen?).

        ``embed`` maps texts -> (n, 384) vectors; it is not called when ``prescreen`` clears the text, and the
        score is then the pre-screen's own probability.
        """
        parts = segments(text)
        feats = [SegmentFeatures.of(p) for p in parts]
        cleared = prescreen.cleared_score(feats) if prescreen is not None else None
        if cleared is not None:
            return cleared, True
        return float(self.score_texts(parts, embed([embed_input(p) for p in parts]), feats).max()), False


def save_artifact(path: Path, arrays: dict[str, np.ndarray], header: dict[str, Any]) -> None:
    write_npz(path, _ARRAYS, arrays, header)
