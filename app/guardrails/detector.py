"""The injection detector the input guard calls: classifier artifact + an embedding function."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np

from app.guardrails.injection import InjectionClassifier

EmbedFn = Callable[[Sequence[str]], np.ndarray]


class InjectionScorer(Protocol):
    threshold: float

    def score(self, text: str) -> float:
        """P(injection) of one message text."""
        ...


class InjectionDetector:
    """Scores texts with the trained classifier; ``embed`` defaults to the gateway's MiniLM (app.embedding).

    Pass the embedding function the router/cache use (e.g. one with an ``EmbeddingMemo``) so a prompt is
    embedded once per request.
    """

    def __init__(self, classifier: InjectionClassifier | None = None, embed: EmbedFn | None = None,
                 threshold: float | None = None) -> None:
        self.classifier = classifier or InjectionClassifier.load()
        self._embed = embed
        self.threshold = self.classifier.threshold if threshold is None else float(threshold)

    @classmethod
    def load(cls, artifact: str | None = None, embed: EmbedFn | None = None) -> InjectionDetector:
        return cls(InjectionClassifier.load(artifact), embed)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if self._embed is None:
            from app.embedding import get_embedder

            self._embed = get_embedder().encode
        return self._embed(list(texts))

    def score(self, text: str) -> float:
        return self.classifier.score_prompt(text, self.embed)
