"""Router deployment: embeds the last user turn once (batched) and classifies simple vs complex.

It returns the decision and the embedding; the ingress calls the chosen pool itself (so tokens
never take an extra hop) and hands the same embedding to the semantic cache.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

import numpy as np
from ray import serve

from app.config import RouterConfig
from app.observability.settings import TracingConfig
from app.observability.tracing import set_attributes, setup_tracing, start_span
from app.route_decision import RouteDecision, decide_route, route_threshold

logger = logging.getLogger("ray.serve")
MAX_EMBED_CHARS = 4000  # MiniLM reads 256 word pieces; longer text only costs tokenizer time


@serve.deployment(max_ongoing_requests=256)
class Router:
    def __init__(self, router: dict[str, Any], tracing: dict[str, Any] | None = None) -> None:
        from app.embedding import EmbeddingMemo, embed_threads, get_embedder

        setup_tracing(TracingConfig.model_validate(tracing or {}))
        self.config = RouterConfig.model_validate(router)
        import torch

        # One intra-op thread: batch-1 MiniLM gains nothing from more on a shared CPU, and the OpenMP
        # workers spin (2 threads measured ~4x slower, ~6x the CPU per sentence on the 2-core box).
        torch.set_num_threads(min(embed_threads(), os.cpu_count() or 1))
        self.embedder = get_embedder()
        self.memo = EmbeddingMemo()  # the same text (a repeated prompt, a cache hit) is embedded once
        self._embedding = 0  # embeddings being computed now (batched or not)
        self.classifier = None
        self.counters = {"decisions": 0, "fallbacks": 0, "embed_errors": 0}
        if self.config.enabled:
            try:
                from app.routing.classifier import RouterClassifier

                self.classifier = RouterClassifier.load(self.config.artifact)
            except Exception as exc:  # a missing/corrupt artifact must not take the gateway down
                logger.error("router classifier unavailable, routing to %s: %s", self.config.default_pool, exc)
        self._embed.set_max_batch_size(self.config.max_batch_size)
        self._embed.set_batch_wait_timeout_s(self.config.batch_wait_timeout_s)

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.002)
    async def _embed(self, texts: list[str]) -> list[np.ndarray]:
        vectors = await asyncio.to_thread(self.embedder.encode, texts)
        return list(vectors)

    async def embed(self, text: str) -> np.ndarray | None:
        text = text[:MAX_EMBED_CHARS]
        vector = self.memo.get(text)
        if vector is not None:
            return vector
        self._embedding += 1
        try:
            if self._embedding == 1:  # idle: encode now rather than wait batch_wait_timeout_s for company
                vector = (await asyncio.to_thread(self.embedder.encode, [text]))[0]
            else:
                vector = await self._embed(text)
        except Exception as exc:
            self.counters["embed_errors"] += 1
            logger.warning("embedding failed: %s", type(exc).__name__)
            return None
        finally:
            self._embedding -= 1
        self.memo.put(text, vector)
        return vector

    async def embed_batch(self, texts: list[str]) -> list[list[float]]:
        """``/v1/embeddings``: unit-norm all-MiniLM-L6-v2 vectors of ``texts`` (checked by app.api.embeddings)."""
        vectors = await asyncio.to_thread(self.embedder.encode, texts)
        return [v.tolist() for v in vectors]

    async def analyze(self, text: str, classify: bool = True, carrier: dict[str, str] | None = None,
                      large_share: float | None = None, turns: int = 1) -> RouteDecision:
        """Embedding of ``text`` and, if ``classify``, the pool it should go to.

        Optional (backward-compatible): ``large_share`` — the tenant's operating point (tenant record
        option ``router.large_share``); ``turns`` — user turns in the conversation so far.
        """
        with start_span("router.analyze", carrier=carrier) as span:
            decision = await self._analyze(text, classify, large_share, turns)
            set_attributes(span, route=decision.pool, **{"llmgw.route.reason": decision.reason,
                                                         "llmgw.route.score": decision.score})
            return decision

    async def _analyze(self, text: str, classify: bool, large_share: float | None = None,
                       turns: int = 1) -> RouteDecision:
        embedding = await self.embed(text)
        if not classify:
            return RouteDecision(pool=self.config.default_pool, score=None, embedding=embedding, reason="not-routed")
        decision = decide_route(self.classifier, text, embedding, self.config, large_share, turns)
        self.counters["decisions"] += 1
        if decision.reason != "classifier":
            self.counters["fallbacks"] += 1
            logger.warning("router fallback to %s (%s)", decision.pool, decision.reason)
        return decision

    async def stats(self) -> dict[str, Any]:
        return {
            **self.counters,
            "embed_memo_hits": self.memo.hits, "embed_memo_size": len(self.memo),
            "classifier": getattr(self.classifier, "version", None),
            "threshold": self._threshold(),
        }

    def _threshold(self) -> float | None:
        if self.classifier is None:
            return self.config.threshold
        try:
            return route_threshold(self.classifier, self.config)
        except Exception:
            return None
