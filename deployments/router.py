"""Router deployment: embeds the last user turn once (batched) and classifies simple vs complex.

It returns the decision and the embedding; the ingress calls the chosen pool itself (so tokens
never take an extra hop) and hands the same embedding to the semantic cache. The work itself is
``app.routing.analyzer.RouteAnalyzer``, which the ingress also runs in-process with
``router.placement: ingress`` (then this deployment serves the batch lane and ``/v1/embeddings``).
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from ray import serve

from app.config import RouterConfig
from app.observability.settings import TracingConfig
from app.observability.tracing import set_attributes, setup_tracing, start_span
from app.route_decision import RouteDecision


@serve.deployment(max_ongoing_requests=256)
class Router:
    def __init__(self, router: dict[str, Any], tracing: dict[str, Any] | None = None) -> None:
        from app.embedding import embed_threads, get_embedder
        from app.routing.analyzer import RouteAnalyzer

        setup_tracing(TracingConfig.model_validate(tracing or {}))
        self.config = RouterConfig.model_validate(router)
        import torch

        # One intra-op thread: batch-1 MiniLM gains nothing from more on a shared CPU, and the OpenMP
        # workers spin (2 threads measured ~4x slower, ~6x the CPU per sentence on the 2-core box).
        torch.set_num_threads(min(embed_threads(), os.cpu_count() or 1))
        self.embedder = get_embedder()
        self.analyzer = RouteAnalyzer.load(self.config, self.embedder.encode)

    async def embed(self, text: str):
        return await self.analyzer.embed(text)

    async def embed_batch(self, texts: list[str]) -> list[list[float]]:
        """``/v1/embeddings``: unit-norm all-MiniLM-L6-v2 vectors of ``texts`` (checked by app.api.embeddings)."""
        vectors = await asyncio.to_thread(self.embedder.encode_full, texts)  # fp32 under the int8 prefilter
        return [v.tolist() for v in vectors]

    async def analyze(self, text: str, classify: bool = True, carrier: dict[str, str] | None = None,
                      large_share: float | None = None, turns: int = 1) -> RouteDecision:
        """Embedding of ``text`` and, if ``classify``, the pool it should go to.

        Optional (backward-compatible): ``large_share`` — the tenant's operating point (tenant record
        option ``router.large_share``); ``turns`` — user turns in the conversation so far.
        """
        with start_span("router.analyze", carrier=carrier) as span:
            decision = await self.analyzer.analyze(text, classify, large_share=large_share, turns=turns)
            set_attributes(span, route=decision.pool, **{"llmgw.route.reason": decision.reason,
                                                         "llmgw.route.score": decision.score})
            return decision

    async def stats(self) -> dict[str, Any]:
        return self.analyzer.stats()
