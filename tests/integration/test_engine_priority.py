"""Shadows ask the pool for a lower vLLM priority (``prompts.shadow.engine_priority``): on the CPU engine with
``extra_args: {scheduling_policy: priority}`` and one sequence at a time, a served request (priority 0) sent
after several queued shadow requests (priority 1) is answered before the queued shadows. Run under the graph
lock (starts vLLM)."""

from __future__ import annotations

import asyncio
import time

import pytest

from app.config import EngineConfig, PoolConfig
from app.engines.base import collect
from app.generation import GenerationRequest, SamplingOptions

pytestmark = pytest.mark.gateway


def req(rid: str, tokens: int = 24) -> GenerationRequest:
    return GenerationRequest(rid, "small", messages=[{"role": "user", "content": f"request {rid}"}],
                             sampling=SamplingOptions(max_tokens=tokens, temperature=0.0))


def test_served_requests_overtake_queued_shadows_on_priority_scheduling() -> None:
    from app.cli import ensure_tiny_models
    from app.engines.vllm_engine import VLLMEngine

    ensure_tiny_models()
    cfg = EngineConfig(model=".cache/models/tiny-small", served_model_name="tiny-small", max_model_len=512,
                       dtype="float32", enforce_eager=True, max_num_seqs=1,
                       extra_args={"scheduling_policy": "priority"})
    engine = VLLMEngine(PoolConfig(name="small", engine=cfg, env={"VLLM_CPU_KVCACHE_SPACE": "1"}))
    assert engine.priority_scheduling
    done: dict[str, float] = {}

    async def one(r: GenerationRequest, priority: int) -> None:
        out = await collect(engine.stream(r, priority=priority))
        assert out.completion_tokens > 0
        done[r.request_id] = time.perf_counter()

    async def main() -> None:
        shadows = [asyncio.create_task(one(req(f"shadow-{i}", 64), 1)) for i in range(4)]
        await asyncio.sleep(0.05)  # the first shadow runs, three wait
        served = asyncio.create_task(one(req("served"), 0))
        await asyncio.gather(served, *shadows)

    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(main())
    finally:
        engine.shutdown()
        loop.run_until_complete(asyncio.sleep(0.2))  # vLLM's socket-closing callback (else zmq term() can hang)
        loop.close()
    order = sorted(done, key=done.get)
    assert order.index("served") <= 1, order  # after at most the shadow already running, before the queued ones
