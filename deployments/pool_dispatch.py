"""Pool calls that cannot start in time fail over instead of waiting at Serve's handle.

Serve queues a handle call while the deployment has no replica with room (none running: a rolling
update, a restart, a lost node; or all at ``max_ongoing_requests``). Every pool call, unary or stream,
is bounded by its *dispatch*: if no replica has taken the request within
``fallback.pool_dispatch_timeout_s``, the queued call is cancelled and the step fails (not retried on
the same pool) so the chain moves on (other pool, providers, stale cache). Once a replica has it, a
unary call may run as long as ``ingress.request_timeout_s`` allows and a stream waits up to
``fallback.pool_first_chunk_timeout_s`` for its first token (retried, as a slow engine may recover).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import AsyncIterator
from typing import Any

from ray.serve.handle import DeploymentHandle

from app.errors import upstream_error
from app.generation import GenerationChunk, GenerationRequest
from app.observability.tracing import inject_context
from app.stream_relay import WrappingStream
from deployments.ingress_backends import PoolHandles


async def await_assignment(response: Any, timeout_s: float | None) -> None:
    """Wait until Serve has assigned ``response`` to a replica; cancel it and raise after ``timeout_s``.

    Uses the response's replica-result future (Ray Serve 2.60 ``DeploymentResponse``); a response
    without one is not bounded (the call then waits as before).
    """
    future = getattr(response, "_replica_result_future", None)
    if timeout_s is None or future is None or future.done():
        return
    waitable = asyncio.wrap_future(future) if isinstance(future, concurrent.futures.Future) else future
    done, _ = await asyncio.wait({waitable}, timeout=timeout_s)  # never cancels what it waits on
    if not done:
        response.cancel()  # drops the call from the handle's queue
        raise upstream_error(f"no replica took the request within {timeout_s:g} s", retryable=False,
                             code="pool_unavailable")


class DispatchBoundedStream(WrappingStream):
    """A pool stream whose first item waits at most ``timeout_s`` for Serve to hand the call to a replica."""

    def __init__(self, stream: AsyncIterator[GenerationChunk], response: Any, timeout_s: float | None) -> None:
        self.stream, self.response, self.timeout_s = stream, response, timeout_s
        self._assigned = timeout_s is None

    async def __anext__(self) -> GenerationChunk:
        if not self._assigned:
            await await_assignment(self.response, self.timeout_s)
            self._assigned = True
        return await anext(self.stream)


class DispatchBoundedPools(PoolHandles):
    """The ingress's pools: unary calls and streams bounded by their dispatch."""

    def __init__(self, handles: dict[str, DeploymentHandle], relay: bool = True,
                 dispatch_timeout_s: float | None = None, leases: int = 0, lease_ttl_s: float = 30.0,
                 unary_leases: bool = False) -> None:
        super().__init__(handles, relay=relay, leases=leases, lease_ttl_s=lease_ttl_s, unary_leases=unary_leases)
        self.dispatch_timeout_s = dispatch_timeout_s

    def plain_stream(self, pool: str, req: GenerationRequest) -> AsyncIterator[GenerationChunk]:
        """Bounded, also when it runs after a stale lease (a lease's own call was assigned when it was booked)."""
        inner = super().plain_stream(pool, req)
        response = getattr(inner, "serve_stream", inner)  # the relay's Serve call, or the handle stream itself
        return DispatchBoundedStream(inner, response, self.dispatch_timeout_s)

    async def generate(self, pool: str, req: GenerationRequest) -> GenerationChunk:
        leased = await self.generate_leased(pool, req)  # a lease's Serve call was assigned when it was booked
        if leased is not None:
            return leased
        response = self.handles[pool].generate.remote(req, inject_context())
        await await_assignment(response, self.dispatch_timeout_s)
        return await response


__all__ = ["DispatchBoundedPools", "DispatchBoundedStream", "await_assignment"]
