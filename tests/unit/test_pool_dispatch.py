"""Unary pool calls bounded by their dispatch (deployments/pool_dispatch.py): a pool no replica of which
takes the call fails over down the chain within ``fallback.pool_dispatch_timeout_s`` instead of waiting
``ingress.request_timeout_s``; a call a replica has taken may run long."""

from __future__ import annotations

import asyncio
import concurrent.futures
import time

import pytest

from app.config import GatewayConfig
from app.errors import UpstreamError
from app.generation import GenerationChunk, GenerationRequest
from app.pipeline.generate import Generate
from app.resilience.breaker import BreakerRegistry
from app.resilience.chain import run_chain
from deployments.pool_dispatch import DispatchBoundedPools, await_assignment


class FakeResponse:
    """A DeploymentResponse: assigned after ``assign_s`` (None: never), answered ``run_s`` later."""

    def __init__(self, text: str, assign_s: float | None, run_s: float, threaded: bool) -> None:
        loop = asyncio.get_running_loop()
        self._replica_result_future = concurrent.futures.Future() if threaded else loop.create_future()
        self.cancelled = False
        self.text, self.run_s = text, run_s
        if assign_s is not None:
            loop.call_later(assign_s, self._assign)

    def _assign(self) -> None:
        if not self._replica_result_future.done():
            self._replica_result_future.set_result("replica")

    def cancel(self) -> None:
        self.cancelled = True
        self._replica_result_future.cancel()

    async def _result(self) -> GenerationChunk:
        while not self._replica_result_future.done():
            await asyncio.sleep(0.005)
        if self._replica_result_future.cancelled():
            raise asyncio.CancelledError
        await asyncio.sleep(self.run_s)
        return GenerationChunk(self.text, "stop", 1, 1, self.text)

    def __await__(self):
        return self._result().__await__()


class FakeHandle:
    def __init__(self, name: str, assign_s: float | None, run_s: float = 0.0, threaded: bool = False) -> None:
        self.name, self.assign_s, self.run_s, self.threaded = name, assign_s, run_s, threaded
        self.responses: list[FakeResponse] = []
        self.generate = self  # handle.generate.remote(...)

    def remote(self, req, carrier) -> FakeResponse:
        self.responses.append(FakeResponse(self.name, self.assign_s, self.run_s, self.threaded))
        return self.responses[-1]


@pytest.mark.parametrize("threaded", [False, True])
async def test_unassigned_call_is_cancelled_and_fails_in_time(threaded: bool) -> None:
    handle = FakeHandle("small", assign_s=None, threaded=threaded)
    response = handle.remote(None, {})
    start = time.monotonic()
    with pytest.raises(UpstreamError) as info:
        await await_assignment(response, 0.05)
    assert time.monotonic() - start < 1.0
    assert info.value.code == "pool_unavailable" and info.value.retryable is False
    assert response.cancelled


async def test_a_long_generation_once_assigned_is_not_cut() -> None:
    pools = DispatchBoundedPools({"small": FakeHandle("small", assign_s=0.01, run_s=0.3)}, relay=False,
                                 dispatch_timeout_s=0.05)
    out = await pools.generate("small", GenerationRequest("r", "small", prompt="hi"))
    assert out.text == "small"  # ran 0.3 s, six times the dispatch bound


def _generate(pools, dispatch_s: float | None = 0.1) -> Generate:
    cfg = GatewayConfig.model_validate({
        "pools": [{"name": "small", "engine": {"model": "m-small"}}, {"name": "large", "engine": {"model": "m-large"}}],
        "ingress": {"request_timeout_s": 5}, "fallback": {"pool_dispatch_timeout_s": dispatch_s}})
    return Generate(cfg, pools, None, None, BreakerRegistry(cfg.fallback.breaker))


async def test_a_pool_with_no_replica_fails_over_to_the_next_pool_within_the_bound() -> None:
    handles = {"small": FakeHandle("small", assign_s=None), "large": FakeHandle("large", assign_s=0.0)}
    cfg_gen = _generate(DispatchBoundedPools(handles, relay=False, dispatch_timeout_s=0.1))  # as the ingress
    req = GenerationRequest("r", "small", prompt="hi")
    start = time.monotonic()
    result = await run_chain([cfg_gen._pool_step("small", req, False), cfg_gen._pool_step("large", req, False)],
                             cfg_gen.config.fallback.retry)
    assert result.path == "pool:large" and result.first.text == "large"
    assert time.monotonic() - start < 2.0  # not request_timeout_s (5 s)
    assert len(handles["small"].responses) == 1 and handles["small"].responses[0].cancelled  # tried once, dropped
    assert ("pool:small", "failed:UpstreamError") in result.attempts


def test_the_bound_is_configurable_and_positive() -> None:
    pools = [{"name": "small", "engine": {"model": "m"}}, {"name": "large", "engine": {"model": "l"}}]
    assert GatewayConfig.model_validate({"pools": pools}).fallback.pool_dispatch_timeout_s == 10.0
    assert GatewayConfig.model_validate({"pools": pools, "fallback": {"pool_dispatch_timeout_s": None}}
                                        ).fallback.pool_dispatch_timeout_s is None
    with pytest.raises(ValueError):
        GatewayConfig.model_validate({"pools": pools, "fallback": {"pool_dispatch_timeout_s": 0}})


def test_ray_serve_responses_still_carry_the_replica_result_future() -> None:
    """await_assignment reads this Ray 2.60 attribute; an upgrade that drops it must fail here, not silently."""
    import inspect

    from ray.serve.handle import DeploymentResponse

    assert "self._replica_result_future = " in inspect.getsource(DeploymentResponse.__mro__[1].__init__)
