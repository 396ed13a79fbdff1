"""Streams to a pool with no routable replica (a rolling update of a one-replica pool, a lost node) fall
back within ``fallback.pool_dispatch_timeout_s`` (deployments/pool_dispatch.DispatchBoundedStream), tried
once, not ``attempts`` × ``pool_first_chunk_timeout_s``; without a dispatch bound, the first-chunk
timeout still ends the wait. Fakes of Serve's streaming ``DeploymentResponseGenerator``."""

from __future__ import annotations

import asyncio
import time

import pytest

from app.config import GatewayConfig
from app.generation import GenerationChunk, GenerationRequest
from app.pipeline.generate import Generate
from app.resilience.breaker import BreakerRegistry
from app.resilience.chain import run_chain
from deployments.pool_dispatch import DispatchBoundedPools


class FakeStream:
    """A streaming handle call: assigned to a replica after ``assign_s`` (None: never), then yields chunks."""

    def __init__(self, text: str, assign_s: float | None, chunks: int = 3) -> None:
        loop = asyncio.get_running_loop()
        self._replica_result_future = loop.create_future()
        self.text, self.left, self.cancelled = text, chunks, False
        if assign_s is not None:
            loop.call_later(assign_s, lambda: self._replica_result_future.done()
                            or self._replica_result_future.set_result("replica"))

    def cancel(self) -> None:
        self.cancelled = True
        self._replica_result_future.cancel()

    def __aiter__(self) -> FakeStream:
        return self

    async def __anext__(self) -> GenerationChunk:
        while not self._replica_result_future.done():  # Serve's queue: nothing until a replica takes it
            await asyncio.sleep(0.005)
        if self._replica_result_future.cancelled():
            raise asyncio.CancelledError
        if self.left == 0:
            raise StopAsyncIteration
        self.left -= 1
        return GenerationChunk(self.text, "stop" if self.left == 0 else None, 1, 1, self.text)


class FakeStreamHandle:
    def __init__(self, name: str, assign_s: float | None) -> None:
        self.name, self.assign_s = name, assign_s
        self.calls: list[FakeStream] = []
        self.stream = self  # handle.options(stream=True).stream.remote(...)

    def options(self, stream: bool = False) -> FakeStreamHandle:
        assert stream
        return self

    def remote(self, req, carrier) -> FakeStream:
        self.calls.append(FakeStream(self.name, self.assign_s))
        return self.calls[-1]


def _generate(handles: dict, dispatch_s: float | None, first_chunk_s: float) -> Generate:
    cfg = GatewayConfig.model_validate({
        "pools": [{"name": "small", "engine": {"model": "m-small"}}, {"name": "large", "engine": {"model": "m-large"}}],
        "ingress": {"request_timeout_s": 30},
        "fallback": {"pool_dispatch_timeout_s": dispatch_s, "pool_first_chunk_timeout_s": first_chunk_s,
                     "retry": {"attempts": 3, "base_delay_s": 0.05, "max_delay_s": 0.1, "deadline_s": 30}}})
    pools = DispatchBoundedPools(handles, relay=False, dispatch_timeout_s=cfg.fallback.pool_dispatch_timeout_s)
    return Generate(cfg, pools, None, None, BreakerRegistry(cfg.fallback.breaker))


async def _chain(gen: Generate):
    req = GenerationRequest("r", "small", prompt="hi")
    start = time.monotonic()
    result = await run_chain([gen._pool_step("small", req, True), gen._pool_step("large", req, True)],
                             gen.config.fallback.retry)
    return result, time.monotonic() - start


async def test_a_stream_to_a_pool_with_no_replica_falls_back_within_the_dispatch_bound() -> None:
    handles = {"small": FakeStreamHandle("small", assign_s=None), "large": FakeStreamHandle("large", assign_s=0.0)}
    result, elapsed = await _chain(_generate(handles, dispatch_s=0.2, first_chunk_s=5.0))
    assert result.path == "pool:large" and result.first.text == "large"
    assert 0.2 <= elapsed < 1.5  # the dispatch bound, not the 5 s first-chunk timeout (nor 3 attempts of it)
    assert len(handles["small"].calls) == 1 and handles["small"].calls[0].cancelled  # tried once, dropped
    assert ("pool:small", "failed:UpstreamError") in result.attempts
    assert [c.text async for c in result.rest] == ["large", "large"]  # the rest of the answer follows


async def test_without_a_dispatch_bound_the_first_chunk_timeout_ends_the_wait() -> None:
    handles = {"small": FakeStreamHandle("small", assign_s=None), "large": FakeStreamHandle("large", assign_s=0.0)}
    result, elapsed = await _chain(_generate(handles, dispatch_s=None, first_chunk_s=0.3))
    assert result.path == "pool:large"
    assert 0.3 <= elapsed < 3 * 0.3 + 2 * 0.1 + 1.0  # attempts × first-chunk timeout + backoff, never a hang
    assert all(call.cancelled for call in handles["small"].calls)  # each timed-out call left Serve's queue


async def test_a_replica_taking_the_stream_within_the_bound_answers_it() -> None:
    handles = {"small": FakeStreamHandle("small", assign_s=0.1), "large": FakeStreamHandle("large", assign_s=0.0)}
    result, _ = await _chain(_generate(handles, dispatch_s=1.0, first_chunk_s=5.0))
    assert result.path == "pool:small" and result.attempts == []
    assert [result.first.text, *[c.text async for c in result.rest]] == ["small"] * 3
    assert handles["large"].calls == []


@pytest.mark.parametrize("relay", [True, False])
def test_the_bound_reads_the_serve_call_behind_the_relay(relay: bool) -> None:
    """Through the relay the Serve call is ``RelayStream.serve_stream``: that is the call whose assignment counts."""

    class Handle:
        def options(self, stream: bool = False):
            return self

        def __getattr__(self, name: str):
            return self

        def remote(self, req, carrier):
            return sentinel

    sentinel = object()
    pools = DispatchBoundedPools({"small": Handle()}, relay=relay, dispatch_timeout_s=1.0)
    stream = pools.stream("small", GenerationRequest("r", "small", prompt="hi"))
    assert stream.response is sentinel


async def test_the_plain_call_after_a_stale_lease_is_bounded_by_its_dispatch_too() -> None:
    import socket
    from collections import deque

    from app.errors import UpstreamError
    from app.relay_lease import Lease
    from app.stream_relay import RelayTicket

    with socket.socket() as s:  # a port nothing listens on: the replica that issued the lease is gone
        s.bind(("127.0.0.1", 0))
        gone = s.getsockname()[1]
    handle = FakeStreamHandle("small", assign_s=None)  # and no replica takes the plain call either
    handle.relay = handle
    pools = DispatchBoundedPools({"small": handle}, relay=True, dispatch_timeout_s=0.2, leases=1)
    lease_call = FakeStream("lease", assign_s=0.0)
    stale = Lease(lease_call, RelayTicket("127.0.0.1", gone, "t"), time.monotonic() + 30)
    pools.leases._ready["small"] = deque([stale])
    stream = pools.stream("small", GenerationRequest("r", "small", prompt="hi"))
    start = time.monotonic()
    with pytest.raises(UpstreamError) as info:
        await anext(stream)
    assert info.value.code == "pool_unavailable" and time.monotonic() - start < 2.0
    assert pools.leases.counts["stale"] == 1 and lease_call.cancelled and handle.calls[-1].cancelled
    pools.leases.close()
