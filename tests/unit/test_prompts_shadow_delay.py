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
