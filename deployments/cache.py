"""Cache actor: the ResponseCache behind a Serve deployment (one replica holds the index)."""

from __future__ import annotations

import contextlib
from typing import Any

import ray
from ray import serve

from app.caching.cache import ResponseCache
from app.caching.entries import CachedResponse, CacheHit
from app.caching.keys import CacheQuery
from app.caching.loader import load_verifier
from app.caching.settings import CacheConfig
from app.call_channel import ChannelEndpoint, ChannelServer
from app.embedding import embed_threads
from app.observability.settings import TracingConfig
from app.observability.tracing import set_attributes, setup_tracing, start_span


@serve.deployment
class CacheDeployment:
    def __init__(self, config: dict[str, Any], tracing: dict[str, Any] | None = None) -> None:
        setup_tracing(TracingConfig.model_validate(tracing or {}))
        cfg = CacheConfig.model_validate(config)
        verifier = load_verifier(cfg)
        if verifier is not None:  # its token vectors: one MiniLM forward per new text, 1 thread is fastest here
            import torch

            torch.set_num_threads(embed_threads())
            if hasattr(verifier, "warm_up"):
                verifier.warm_up()  # before the replica takes traffic: a cold first lookup would time out
        self.cache = ResponseCache(cfg, verifier=verifier)
        self._start_rebuild()
        # the ingress's lookups and stores without a handle hop (app/call_channel.py): same methods, same spans
        self.channel_server = ChannelServer({"lookup": self.lookup, "store": self.store,
                                             "stale_lookup": self.stale_lookup}, ray.util.get_node_ip_address())

    async def channel(self) -> ChannelEndpoint:
        """Where this replica takes lookups and stores over its own socket (started on first ask)."""
        return await self.channel_server.endpoint()

    async def channel_served(self) -> int:
        """Calls this replica answered over its channel (tests, diagnostics)."""
        return self.channel_server.served

    def _start_rebuild(self) -> None:
        """Rebuild from Redis in the background: every call below answers at once meanwhile (lookups
        from what is loaded so far, else a miss), none waits for the rebuild."""
        with contextlib.suppress(RuntimeError):  # constructed outside the event loop: the first call starts it
            self.cache.start_rebuild()

    async def lookup(self, q: CacheQuery, carrier: dict[str, str] | None = None) -> CacheHit | None:
        with start_span("cache.lookup", carrier=carrier, attributes={"tenant": q.tenant}) as span:
            self._start_rebuild()
            hit = await self.cache.lookup(q)
            set_attributes(span, cache=f"hit-{hit.layer}" if hit is not None else "miss")
            return hit

    async def store(self, q: CacheQuery, r: CachedResponse, ttl_seconds: int | None = None) -> None:
        self._start_rebuild()
        await self.cache.store_response(q, r, ttl_seconds)

    async def stale_lookup(self, q: CacheQuery, min_similarity: float) -> CacheHit | None:
        self._start_rebuild()
        return await self.cache.stale_lookup(q, min_similarity)

    async def stats(self, tenant: str | None = None) -> dict[str, Any]:
        self._start_rebuild()
        return self.cache.stats(tenant)

    async def invalidate(self, tenant: str, prefix: str | None = None) -> int:
        self._start_rebuild()
        return await self.cache.invalidate(tenant, prefix)

    async def flush(self) -> int:
        self._start_rebuild()
        return await self.cache.flush()
