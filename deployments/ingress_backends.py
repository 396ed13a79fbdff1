"""The pipeline's backends (``app.pipeline.backends``) over Serve deployment handles, trace context attached."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from ray.serve.handle import DeploymentHandle

from app.caching.entries import CachedResponse, CacheHit
from app.caching.keys import CacheQuery
from app.call_channel import ChannelBroken, ChannelClient
from app.config import GatewayConfig
from app.generation import GenerationChunk, GenerationRequest
from app.observability import metrics
from app.observability.tracing import inject_context, set_attributes, start_span
from app.relay_lease import LeasedStream, LeaseOrCall, PoolLeases
from app.route_decision import RouteDecision
from app.routing.analyzer import RouteAnalyzer
from app.stream_relay import RelayBroken, RelayConnections, RelayStream


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


class InProcessRouter:
    """``router.placement: ingress``: the Router deployment's work in this replica, same span and verdicts."""

    def __init__(self, analyzer: RouteAnalyzer) -> None:
        self.analyzer = analyzer
        self.embed_sync = analyzer.embed_sync
        self.embed_batch = analyzer.embed_batch

    async def analyze(self, text: str, classify: bool, *, large_share: float | None = None,
                      turns: int = 1) -> RouteDecision:
        with start_span("router.analyze") as span:
            decision = await self.analyzer.analyze(text, classify, large_share=large_share, turns=turns)
            set_attributes(span, route=decision.pool, **{"llmgw.route.reason": decision.reason,
                                                         "llmgw.route.score": decision.score})
            return decision


def in_process_router(config: GatewayConfig) -> InProcessRouter | None:
    """The in-process router for ``router.placement: ingress`` (one torch thread), else None."""
    if config.router.placement != "ingress":
        return None
    import torch

    from app.embedding import embed_threads

    torch.set_num_threads(embed_threads())
    return InProcessRouter(RouteAnalyzer.load(config.router))


class CacheHandle:
    """The cache deployment's calls; with ``channel`` (``ingress.cache_channel``) lookups and stores go over the
    replica's own socket (``app.call_channel``), the handle only when the socket fails."""

    def __init__(self, handle: DeploymentHandle, channel: bool = False) -> None:
        self.handle = handle
        self.channel = ChannelClient(lambda: self.handle.channel.remote()) if channel else None

    async def _call(self, method: str, *args):
        if self.channel is not None:
            try:
                return await self.channel.call(method, *args)
            except ChannelBroken:
                pass  # the replica moved or restarted: this call by handle, the next asks for the endpoint again
        return await getattr(self.handle, method).remote(*args)

    async def lookup(self, query: CacheQuery) -> CacheHit | None:
        return await self._call("lookup", query, inject_context())

    async def store(self, query: CacheQuery, response: CachedResponse) -> None:
        await self._call("store", query, response)

    async def stale_lookup(self, query: CacheQuery, min_similarity: float) -> CacheHit | None:
        return await self._call("stale_lookup", query, min_similarity)


def _count_lease(pool: str, outcome: str) -> None:
    metrics.POOL_LEASES.labels(pool=pool, outcome=outcome).inc()


class PoolHandles:
    """Streams go over the pools' relay sockets (``ingress.stream_relay``, default) or as handle items; with
    ``leases`` > 0 a stream (and with ``unary_leases`` a unary call) takes a Serve call booked ahead
    (``app.relay_lease``) when one is ready."""

    def __init__(self, handles: dict[str, DeploymentHandle], relay: bool = True, leases: int = 0,
                 lease_ttl_s: float = 30.0, unary_leases: bool = False) -> None:
        self.handles = handles
        self.unary_leases = unary_leases
        self.relay = RelayConnections() if relay else None
        self.leases = (PoolLeases(self._open_lease, leases, lease_ttl_s, observe=_count_lease)
                       if relay and leases > 0 else None)

    def _open_lease(self, pool: str, ttl_s: float):
        return self.handles[pool].options(stream=True).lease.remote(ttl_s)

    def stream(self, pool: str, req: GenerationRequest) -> AsyncIterator[GenerationChunk]:
        if self.leases is None:  # leases only exist with the relay
            return self.plain_stream(pool, req)
        lease = self.leases.take(pool)
        set_attributes(**{"llmgw.pool.leased": lease is not None})
        if lease is None:
            return self.plain_stream(pool, req)
        return LeaseOrCall(LeasedStream(lease, (req, inject_context()), self.relay),
                           lambda: self.plain_stream(pool, req), lambda: self._lease_gone(pool))

    def plain_stream(self, pool: str, req: GenerationRequest) -> AsyncIterator[GenerationChunk]:
        """The stream's own Serve call: a relay ticket call, or handle items without the relay."""
        handle = self.handles[pool].options(stream=True)
        if self.relay is not None:
            return RelayStream(handle.relay.remote(req, inject_context()), self.relay)
        return handle.stream.remote(req, inject_context())

    def _lease_gone(self, pool: str) -> None:
        """A taken lease failed before its first item: the plain call answers instead (not a pool failure)."""
        self.leases.stale(pool)
        set_attributes(**{"llmgw.pool.leased": False})

    async def generate(self, pool: str, req: GenerationRequest) -> GenerationChunk:
        leased = await self.generate_leased(pool, req)
        if leased is not None:
            return leased
        return await self.handles[pool].generate.remote(req, inject_context())

    async def generate_leased(self, pool: str, req: GenerationRequest) -> GenerationChunk | None:
        """A unary call on a ready lease (the request and its one answer chunk over the relay socket), or None
        when no lease is ready (the caller makes the Serve call). Cancelled or failed: the lease's call ends."""
        if not self.unary_leases or self.relay is None or self.leases is None:
            return None
        lease = self.leases.take(pool)
        set_attributes(**{"llmgw.pool.leased": lease is not None})
        if lease is None:
            return None
        stream = LeasedStream(lease, (req, inject_context(), "unary"), self.relay)
        try:
            try:
                answer = await anext(stream)
            except RelayBroken:  # the lease was gone before the request ran: the caller makes the Serve call
                self._lease_gone(pool)
                return None
            with contextlib.suppress(StopAsyncIteration):
                await anext(stream)  # the end frame: the connection goes back to the pool
            return answer
        finally:
            await stream.aclose()


class ProviderHandle:
    def __init__(self, handle: DeploymentHandle) -> None:
        self.handle = handle

    def stream(self, req: GenerationRequest) -> AsyncIterator[GenerationChunk]:
        return self.handle.options(stream=True).stream.remote(req, inject_context())
