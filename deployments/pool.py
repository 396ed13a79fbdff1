"""Model pool deployment: one inference engine per replica (small and large pools share this class)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import ray
from ray import serve

from app.config import PoolConfig
from app.engines import create_engine
from app.engines.base import coalesce, collect
from app.generation import GenerationChunk, GenerationRequest
from app.observability import metrics
from app.observability.settings import TracingConfig
from app.observability.tracing import set_attributes, setup_tracing, start_span
from app.relay_lease import lease_chunks
from app.stream_relay import RelayServer, RelayTicket, relay_chunks

RELAY_DELIVERY_TIMEOUT_S = 60.0  # an ingress that never reads its ticket does not hold the replica longer


@serve.deployment
class ModelPool:
    """Serves one pool's model. ``stream`` for SSE, ``generate`` for unary calls (one Ray hop, no per-token cost)."""

    def __init__(self, pool: dict[str, Any], tracing: dict[str, Any] | None = None) -> None:
        self.config = PoolConfig.model_validate(pool)
        setup_tracing(TracingConfig.model_validate(tracing or {}))
        self.engine = create_engine(self.config)
        self.relay_server = RelayServer(ray.util.get_node_ip_address())
        self.leased = 0  # streams that came in on a lease (app/relay_lease.py)

    async def stream(self, req: GenerationRequest, carrier: dict[str, str] | None = None
                     ) -> AsyncIterator[GenerationChunk]:
        async for chunk in self._traced(req, carrier, {"route": self.config.name}):
            yield chunk

    async def _traced(self, req: GenerationRequest, carrier: dict[str, str] | None, attributes: dict[str, Any]
                      ) -> AsyncIterator[GenerationChunk]:
        """The engine's chunks in stream windows, inside a ``pool.stream`` span and the in-flight gauges."""
        with start_span("pool.stream", carrier=carrier, attributes=attributes) as span, self._in_flight():
            last = None
            async for chunk in coalesce(self.engine.stream(req), self.config.stream_window_ms / 1000):
                last = chunk
                yield chunk
            if last is not None:
                set_attributes(span, prompt_tokens=last.prompt_tokens, completion_tokens=last.completion_tokens)

    async def relay(self, req: GenerationRequest, carrier: dict[str, str] | None = None
                    ) -> AsyncIterator[RelayTicket]:
        """``stream`` with the tokens off the handle: yields one ticket; the chunks go over this replica's
        relay socket (``app.stream_relay``); the call ends once they were delivered (Serve counts it till then)."""
        with start_span("pool.stream", carrier=carrier, attributes={"route": self.config.name}) as span, \
                self._in_flight():
            chunks = coalesce(self.engine.stream(req), self.config.stream_window_ms / 1000)
            async for ticket in relay_chunks(self.relay_server, chunks, RELAY_DELIVERY_TIMEOUT_S, on_last=lambda c:
                                             set_attributes(span, prompt_tokens=c.prompt_tokens,
                                                            completion_tokens=c.completion_tokens)):
                yield ticket

    async def lease(self, ttl_s: float = 30.0) -> AsyncIterator[RelayTicket]:
        """``relay`` booked ahead (``app.relay_lease``): yields a ticket at once, then runs the request the ingress
        sends under it over the relay socket; ends unused after ``ttl_s``."""
        async for ticket in lease_chunks(self.relay_server, self._leased, ttl_s, RELAY_DELIVERY_TIMEOUT_S):
            yield ticket

    async def _leased(self, payload: Any) -> AsyncIterator[GenerationChunk]:
        """A leased request: ``(req, carrier)`` streams windows; ``(req, carrier, "unary")`` sends ``generate``'s
        one answer chunk."""
        ok = isinstance(payload, tuple) and len(payload) in (2, 3) and isinstance(payload[0], GenerationRequest)
        mode = payload[2] if ok and len(payload) == 3 else "stream"
        if not ok or mode not in ("stream", "unary"):
            raise TypeError("a pool lease carries (GenerationRequest, carrier[, 'unary'])")
        req, carrier = payload[0], payload[1]
        self.leased += 1
        if mode == "unary":
            yield await self._generate(req, carrier, {"route": self.config.name, "llmgw.pool.leased": True})
            return
        async for chunk in self._traced(req, carrier, {"route": self.config.name, "llmgw.pool.leased": True}):
            yield chunk

    async def generate(self, req: GenerationRequest, carrier: dict[str, str] | None = None) -> GenerationChunk:
        return await self._generate(req, carrier, {"route": self.config.name})

    async def _generate(self, req: GenerationRequest, carrier: dict[str, str] | None, attributes: dict[str, Any]
                        ) -> GenerationChunk:
        with start_span("pool.generate", carrier=carrier, attributes=attributes) as span, self._in_flight():
            out = await collect(self.engine.stream(req))
            set_attributes(span, prompt_tokens=out.prompt_tokens, completion_tokens=out.completion_tokens)
            return out

    async def generate_batch(self, reqs: list[GenerationRequest], carrier: dict[str, str] | None = None,
                             priority: int = 0) -> list[tuple[GenerationChunk | None, float, str | None]]:
        """Several unary calls in one handle call (the ShadowWorker's runs): per request (answer, its own latency
        ms, error or None), run side by side; one failing fails only its own entry. ``priority``: vLLM's (lower
        first; served requests 0), on an engine with ``scheduling_policy: priority``, else ignored."""
        lower = priority and getattr(self.engine, "priority_scheduling", False)

        async def one(req: GenerationRequest) -> tuple[GenerationChunk | None, float, str | None]:
            started = time.perf_counter()
            try:
                with self._in_flight():
                    stream = self.engine.stream(req, priority=priority) if lower else self.engine.stream(req)
                    out = await collect(stream)
            except Exception as exc:
                return None, (time.perf_counter() - started) * 1000, f"{type(exc).__name__}: {exc}"[:500]
            return out, (time.perf_counter() - started) * 1000, None

        with start_span("pool.generate_batch", carrier=carrier, attributes={"route": self.config.name}):
            return list(await asyncio.gather(*(one(req) for req in reqs)))

    @contextlib.contextmanager
    def _in_flight(self) -> Iterator[None]:
        """Ongoing requests and engine queue depth per pool (summed over live replicas by /metrics)."""
        ongoing = metrics.POOL_ONGOING.labels(self.config.name)
        ongoing.inc()
        try:
            yield
        finally:
            ongoing.dec()
            metrics.POOL_QUEUE.labels(self.config.name).set(self.engine.stats().get("running", 0))

    async def stats(self) -> dict[str, Any]:
        return {"pool": self.config.name, "model": self.engine.model_name, "leased": self.leased, **self.engine.stats()}

    async def check_health(self) -> None:
        await self.engine.check_health()

    def __del__(self) -> None:
        engine = getattr(self, "engine", None)
        if engine is not None:
            engine.shutdown()
