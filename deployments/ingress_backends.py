"""The pipeline's backends (``app.pipeline.backends``) over Serve deployment handles, trace context attached."""

from __future__ import annotations

from collections.abc import AsyncIterator

from ray.serve.handle import DeploymentHandle

from app.caching.entries import CachedResponse, CacheHit
from app.caching.keys import CacheQuery
from app.generation import GenerationChunk, GenerationRequest
from app.observability.tracing import inject_context
from app.route_decision import RouteDecision


class RouterHandle:
    def __init__(self, handle: DeploymentHandle) -> None:
        self.handle = handle

    async def analyze(self, text: str, classify: bool, *, large_share: float | None = None,
                      turns: int = 1) -> RouteDecision:
        return await self.handle.analyze.remote(text, classify=classify, carrier=inject_context(),
                                                large_share=large_share, turns=turns)

    def embed_sync(self, texts: list[str]):
        """MiniLM vectors from the router's model, for callers in a worker thread (the injection guard)."""
        import numpy as np

        return np.asarray(self.handle.embed_batch.remote(list(texts)).result(), dtype=np.float32)


class CacheHandle:
    def __init__(self, handle: DeploymentHandle) -> None:
        self.handle = handle

    async def lookup(self, query: CacheQuery) -> CacheHit | None:
        return await self.handle.lookup.remote(query, inject_context())

    async def store(self, query: CacheQuery, response: CachedResponse) -> None:
        await self.handle.store.remote(query, response)

    async def stale_lookup(self, query: CacheQuery, min_similarity: float) -> CacheHit | None:
        return await self.handle.stale_lookup.remote(query, min_similarity)


class PoolHandles:
    def __init__(self, handles: dict[str, DeploymentHandle]) -> None:
        self.handles = handles

    def stream(self, pool: str, req: GenerationRequest) -> AsyncIterator[GenerationChunk]:
        return self.handles[pool].options(stream=True).stream.remote(req, inject_context())

    async def generate(self, pool: str, req: GenerationRequest) -> GenerationChunk:
        return await self.handles[pool].generate.remote(req, inject_context())


class ProviderHandle:
    def __init__(self, handle: DeploymentHandle) -> None:
        self.handle = handle

    def stream(self, req: GenerationRequest) -> AsyncIterator[GenerationChunk]:
        return self.handle.options(stream=True).stream.remote(req, inject_context())
