"""What the stages call: the router, the cache, the pools and the providers, as plain protocols.

The Serve deployment implements them over its handles (``deployments/ingress_backends.py``); unit
tests implement them in a few lines. Streams returned here may have a ``cancel()`` (Serve's
streaming responses do): the pipeline calls it when the client goes away, aborting the engine request.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Protocol

from app.caching.entries import CachedResponse, CacheHit
from app.caching.keys import CacheQuery
from app.generation import GenerationChunk, GenerationRequest
from app.route_decision import RouteDecision


class RouterClient(Protocol):
    async def analyze(self, text: str, classify: bool, *, large_share: float | None = None,
                      turns: int = 1) -> RouteDecision: ...


class CacheClient(Protocol):
    async def lookup(self, query: CacheQuery) -> CacheHit | None: ...

    async def store(self, query: CacheQuery, response: CachedResponse) -> None: ...

    async def stale_lookup(self, query: CacheQuery, min_similarity: float) -> CacheHit | None: ...


class PoolClient(Protocol):
    def stream(self, pool: str, req: GenerationRequest) -> AsyncIterator[GenerationChunk]: ...

    async def generate(self, pool: str, req: GenerationRequest) -> GenerationChunk: ...


class ProviderClient(Protocol):
    def stream(self, req: GenerationRequest) -> AsyncIterator[GenerationChunk]: ...


class Backends(Protocol):
    router: RouterClient | None
    cache: CacheClient | None
    pools: PoolClient
    providers: ProviderClient | None
    extras: dict[str, Any]
