"""The injection detector the input guard calls: classifier artifact + pre-screen + an embedding function."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np

from app.guardrails.injection import InjectionClassifier
from app.guardrails.prescreen import Prescreen

EmbedFn = Callable[[Sequence[str]], np.ndarray]
log = logging.getLogger(__name__)


class InjectionScorer(Protocol):
    threshold: float

    def score(self, text: str, prescreen: bool = True) -> float:
        """P(injection) of one message text; ``prescreen``: a text the pre-screen clears skips the embedding."""
        ...


class InjectionDetector:
    """Scores texts with the trained classifier; ``embed`` defaults to the gateway's MiniLM (app.embedding).

    Pass the embedding function the router/cache use (e.g. one with an ``EmbeddingMemo``) so a prompt is
    embedded once per request. ``prescreen`` (loaded beside the classifier; None if its artifact is missing,
    which only costs the embedding) clears plainly benign texts without the MiniLM pass. ``counts`` says how
    many texts were ``cleared`` by it and how many were ``embedded``.
    """

    def __init__(self, classifier: InjectionClassifier | None = None, embed: EmbedFn | None = None,
                 threshold: float | None = None, prescreen: Prescreen | None = None) -> None:
        self.classifier = classifier or InjectionClassifier.load()
        self._embed = embed
        self.threshold = self.classifier.threshold if threshold is None else float(threshold)
        if prescreen is not None and prescreen.classifier != self.classifier.version:
            log.warning("injection pre-screen was chosen for classifier %s, not %s; every text is embedded",
                        prescreen.classifier, self.classifier.version)
            prescreen = None
        if prescreen is not None and prescreen.probability_at_threshold >= self.threshold:
            raise ValueError("the pre-screen clears texts up to a probability the classifier would flag")
        self.prescreen = prescreen
        self.counts = {"cleared": 0, "embedded": 0}

    @classmethod
    def load(cls, artifact: str | None = None, embed: EmbedFn | None = None,
             prescreen_artifact: str | None = None) -> InjectionDetector:
        try:
            prescreen = Prescreen.load(prescreen_artifact)
        except Exception as exc:  # the exact path still works: every text is embedded
            log.warning("injection pre-screen unavailable (%s); every text is embedded", exc)
            prescreen = None
        return cls(InjectionClassifier.load(artifact), embed, prescreen=prescreen)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if self._embed is None:
            from app.embedding import get_embedder

            self._embed = get_embedder().encode
        return self._embed(list(texts))

    def score(self, text: str, prescreen: bool = True) -> float:
        score, cleared = self.classifier.score_prompt(text, self.embed, self.prescreen if prescreen else None)
        self.counts["cleared" if cleared else "embedded"] += 1
        return score
