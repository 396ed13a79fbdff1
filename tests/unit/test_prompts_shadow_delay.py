"""A shadow run starts ``prompts.shadow.start_delay_s`` after the served answer ended: nothing of it (budget
check, render, pool call) runs on the event loop while the served answer's last bytes go out."""

from __future__ import annotations

import asyncio
import time

from app.config import GatewayConfig
from app.generation import GenerationChunk
from app.pipeline.render_prompt import build_prompt_wiring
from tests.unit.test_pipeline import config, drain
from tests.unit.test_prompts_stage import REF, ctx, setup


async def test_the_candidate_starts_only_after_the_start_delay() -> None:
    started: list[float] = []

    async def generate(req):
        started.append(time.perf_counter())
        return GenerationChunk("shadow", "stop", 1, 1, "tiny-small")

    pipe, _, _, experiments, _, shadow = await setup(generate)
    shadow.start_delay_s = 0.2
    await experiments.start("acme", {"name": "cand", "prompt": "support", "shadow": {"version": 2, "sample_rate": 1.0}})
    assert await drain(pipe, ctx(REF)) == "w w w "
    served_at = time.perf_counter()
    await asyncio.sleep(0.1)
    assert started == [] and len(shadow.tasks) == 1  # submitted, not started: the served answer went first
    await shadow.wait()
    assert len(started) == 1 and started[0] - served_at >= 0.1 and shadow.counts == {"ok": 1}


def test_the_delay_is_configured_and_reaches_the_runner() -> None:
    base = config()
    assert base.prompts.shadow.start_delay_s == 0.25
    cfg = GatewayConfig.model_validate({**base.model_dump(), "prompts": {"shadow": {"start_delay_s": 0.5}}})
    wiring = build_prompt_wiring(cfg)
    assert wiring.attach_shadow(lambda req: None).start_delay_s == 0.5
    assert build_prompt_wiring(cfg, shadow_generate=lambda req: None).shadow.start_delay_s == 0.5


async def test_a_waiting_shadow_holds_no_run_slot() -> None:
    """max_concurrency bounds runs past the delay: a 100 % shadow at more than max_concurrency / start_delay_s
    requests per second still runs every sample (before, the sleeping tasks took the slots and most were skipped)."""
    peak: list[int] = []

    async def generate(req):
        peak.append(shadow.running)
        await asyncio.sleep(0.01)
        return GenerationChunk("shadow", "stop", 1, 1, "tiny-small")

    pipe, _, _, experiments, _, shadow = await setup(generate)
    shadow.start_delay_s, shadow.max_concurrency = 0.1, 2
    await experiments.start("acme", {"name": "cand", "prompt": "support", "shadow": {"version": 2, "sample_rate": 1.0}})
    for _ in range(6):
        await drain(pipe, ctx(REF))
    assert len(shadow.tasks) == 6  # all six wait out the delay
    await shadow.wait()
    assert shadow.counts == {"ok": 6} and max(peak) == 2  # queued for a slot, never more than two at once


async def test_runs_past_the_delay_are_bounded_and_pending_ones_too() -> None:
    gate = asyncio.Event()

    async def generate(req):
        await gate.wait()
        return GenerationChunk("shadow", "stop", 1, 1, "tiny-small")

    pipe, _, _, experiments, _, shadow = await setup(generate)
    shadow.start_delay_s, shadow.max_concurrency, shadow.max_pending = 0.05, 2, 3
    await experiments.start("acme", {"name": "cand", "prompt": "support", "shadow": {"version": 2, "sample_rate": 1.0}})
    for _ in range(4):  # the fourth finds three pending: skipped at submit
        await drain(pipe, ctx(REF))
    assert len(shadow.tasks) == 3 and shadow.counts == {"skipped_busy": 1}
    await asyncio.sleep(0.15)  # past the delay: two run (blocked on the gate), the third waits for a slot
    assert shadow.running == 2 and len(shadow.tasks) == 3 and len(shadow._waiters) == 1
    gate.set()
    await shadow.wait()
    assert shadow.running == 0 and not shadow._waiters and shadow.counts == {"skipped_busy": 1, "ok": 3}


def test_max_pending_is_configured_and_reaches_the_runner() -> None:
    base = config()
    assert base.prompts.shadow.max_pending == 256
    cfg = GatewayConfig.model_validate({**base.model_dump(), "prompts": {"shadow": {"max_pending": 9}}})
    assert build_prompt_wiring(cfg).attach_shadow(lambda req: None).max_pending == 9
    assert build_prompt_wiring(cfg, shadow_generate=lambda req: None).shadow.max_pending == 9


async def test_a_shadow_waits_for_a_gap_between_served_requests() -> None:
    """The lower-priority path: past its delay a shadow starts only when no served request is in flight on the
    replica; one that never finds a gap within yield_max_s is skipped_busy."""
    from app.prompts.shadow import InFlight

    started: list[int] = []

    async def generate(req):
        started.append(served.count)
        return GenerationChunk("shadow", "stop", 1, 1, "tiny-small")

    pipe, _, _, experiments, _, shadow = await setup(generate)
    served = InFlight()
    render = next(s for s in pipe.stages if s.name == "render_prompt")
    render.inflight = served
    shadow.served, shadow.start_delay_s, shadow.yield_max_s = served, 0.0, 0.3
    await experiments.start("acme", {"name": "cand", "prompt": "support", "shadow": {"version": 2, "sample_rate": 1.0}})
    assert await drain(pipe, ctx(REF)) == "w w w " and served.count == 0  # the finisher left
    served.enter()  # another served request in flight
    await drain(pipe, ctx(REF))
    await asyncio.sleep(0.1)
    assert started == [] and len(shadow.tasks) == 2  # both wait for the gap
    served.leave()
    await shadow.wait()
    assert started == [0, 0] and shadow.counts == {"ok": 2}
    served.enter()  # a replica that is never idle: the shadow gives up
    await drain(pipe, ctx(REF))
    await shadow.wait()
    assert shadow.counts == {"ok": 2, "skipped_busy": 1}
    served.leave()


def test_yield_is_configured_and_wired_to_the_render_stage() -> None:
    base = config()
    assert base.prompts.shadow.yield_max_s == 2.0
    wiring = build_prompt_wiring(base)
    runner = wiring.attach_shadow(lambda req: None)
    assert runner.served is wiring.render.inflight and runner.yield_max_s == 2.0
    built = build_prompt_wiring(base, shadow_generate=lambda req: None)
    assert built.shadow.served is built.render.inflight
