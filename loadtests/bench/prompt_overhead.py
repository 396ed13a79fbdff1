"""What registry prompts, A/B assignment and shadow runs add to a served request, in-process.

    python -m loadtests.bench.prompt_overhead [--requests 2000] [--concurrency 8] [--redis-url URL]

The ingress pipeline (parse → authenticate → [render_prompt] → route → tokens → generate, cost → log)
runs against an in-process pool that answers at once, so the figures are the stages' own cost:
(a) no prompt_ref, (b) prompt_ref (resolve + strict render), (c) prompt_ref in an A/B experiment,
(d) the same with a shadow on every request whose candidate takes 50 ms (shadow tasks pile up to the concurrency
cap while the served requests go on). The cases run interleaved in rounds of ``concurrency`` requests.
Prints the render stage's own cost, p50/p99 per case and the added p99 vs (a).
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid

import numpy as np

from app.config import GatewayConfig
from app.generation import GenerationChunk
from app.observability.request_log import RequestLogger
from app.observability.settings import RequestLogConfig
from app.pipeline.build import build_pipeline
from app.pipeline.context import RequestContext
from app.pipeline.render_prompt import build_prompt_wiring
from app.resilience.breaker import BreakerRegistry

TEMPLATE = {"messages": [{"role": "system", "content": "You help {{ customer }} with {{ product }}. {{ notes }}"}],
            "variables": {"customer": {}, "product": {}, "notes": {"required": False, "default": ""}}}


class InstantPools:
    async def generate(self, pool, req):
        return GenerationChunk("ok " * 8, "stop", 20, 8, f"tiny-{pool}")

    def stream(self, pool, req):
        raise NotImplementedError


def config(redis_url: str | None, prefix: str) -> GatewayConfig:
    pools = [{"name": n, "engine": {"model": f".cache/models/tiny-{n}", "served_model_name": f"tiny-{n}",
                                     "max_model_len": 512}} for n in ("small", "large")]
    # guardrails off: their classifier is measured by its own bench; here only the prompt stages differ
    return GatewayConfig.model_validate({"pools": pools, "redis": {"url": redis_url},
                                         "prompts": {"key_prefix": prefix}, "guardrails": {"enabled": False}})


def build(redis_url: str | None, prefix: str):
    """The pipeline, built outside the event loop (the policy factory checks Redis synchronously)."""
    cfg = config(redis_url, prefix)
    log = RequestLogger(RequestLogConfig())
    pipe = build_pipeline(cfg, router=None, cache=None, pools=InstantPools(), providers=None,
                          breakers=BreakerRegistry(cfg.fallback.breaker), request_log=log)
    return cfg, log, pipe


async def run(n: int, concurrency: int, redis_url: str | None, prefix: str, built) -> None:
    cfg, log, pipe = built

    async def slow_candidate(req):
        await asyncio.sleep(0.05)
        return GenerationChunk("shadow", "stop", 20, 1, "tiny-large")

    wiring = build_prompt_wiring(cfg, log, shadow_generate=slow_candidate)  # ours, whatever build_pipeline wired
    stages = [st for st in pipe.stages if st.name != "render_prompt"]
    at = next(i for i, st in enumerate(stages) if st.name == "authenticate") + 1
    pipe.stages = [*stages[:at], wiring.render, *stages[at:]]
    finishers = [f for f in pipe.finishers if f.name != "prompt_outcome"]
    after = next((i + 1 for i, f in enumerate(finishers) if f.name == "cost"), 0)  # it reads ctx.cost_usd
    pipe.finishers = [*finishers[:after], wiring.outcome, *finishers[after:]]
    await wiring.registry.create("acme", "support", TEMPLATE, labels=["production"])
    await wiring.registry.create("acme", "support", TEMPLATE)

    await wiring.registry.create("acme", "support-ab", TEMPLATE, labels=["production"])
    await wiring.registry.create("acme", "support-ab", TEMPLATE)
    await wiring.experiments.start("acme", {"name": "bench", "prompt": "support-ab", "variants": [
        {"name": "a", "weight": 50}, {"name": "b", "weight": 50, "version": 2}],
        "shadow": {"version": 2, "sample_rate": 1.0, "budget_usd": 1000}})
    await wiring.registry.create("acme", "support-ab2", TEMPLATE, labels=["production"])
    await wiring.registry.create("acme", "support-ab2", TEMPLATE)
    await wiring.experiments.start("acme", {"name": "bench2", "prompt": "support-ab2", "variants": [
        {"name": "a", "weight": 50}, {"name": "b", "weight": 50, "version": 2}]})
    prompts = {"plain": None, "prompt_ref": "support", "ab": "support-ab2", "ab+shadow": "support-ab"}

    def body(prompt: str | None, i: int) -> dict:
        b = {"model": "small", "max_tokens": 8, "user": f"u{i % 500}",
             "messages": [{"role": "user", "content": f"question number {i}"}]}
        if prompt:
            b["prompt_ref"] = {"name": prompt, "variables": {"customer": "Ann", "product": "Ray"}}
        return b

    async def one(prompt: str | None, i: int) -> float:
        ctx = RequestContext(endpoint="chat", path="/v1/chat/completions", headers={"x-llmgw-tenant": "acme"},
                             body=body(prompt, i))
        started = time.perf_counter()
        answer = await pipe.run(ctx)
        async for _ in answer.rest:
            pass
        return time.perf_counter() - started

    for name in prompts.values():  # warm-up (tokenizers, caches)
        for i in range(30):
            await one(name, i)
    # Part 1: the render stage alone, sequentially (what a prompt_ref request pays before routing).
    stage_us = []
    for i in range(n):
        ctx = RequestContext(endpoint="chat", path="/v1/chat/completions", headers={"x-llmgw-tenant": "acme"},
                             body=body("support-ab", i))
        for st in pipe.stages[:at]:
            await st(ctx)
        started = time.perf_counter()
        await wiring.render(ctx)
        stage_us.append((time.perf_counter() - started) * 1e6)
    print(f"render_prompt stage (A/B experiment, sequential): p50 {np.percentile(stage_us, 50):.0f} us, "
          f"p99 {np.percentile(stage_us, 99):.0f} us")
    # The prompt_outcome finisher on a shadow-sampled request: what the served answer waits for (the submit).
    outcome_us = []
    for i in range(min(n, 200)):  # the shadow cap fills at once; the rest measure the skip path
        ctx = RequestContext(endpoint="chat", path="/v1/chat/completions", headers={"x-llmgw-tenant": "acme"},
                             body=body("support-ab", i))
        answer = await pipe.run(ctx)
        async for _ in answer.rest:
            pass
        started = time.perf_counter()
        await wiring.outcome(ctx)
        outcome_us.append((time.perf_counter() - started) * 1e6)
    await wiring.shadow.wait()
    print(f"prompt_outcome finisher (stats task + shadow submit): p50 {np.percentile(outcome_us, 50):.0f} us, "
          f"p99 {np.percentile(outcome_us, 99):.0f} us")
    # Part 2: whole requests, the three cases interleaved in rounds so machine noise hits them alike.
    results: dict[str, list[float]] = {k: [] for k in prompts}
    for r in range(0, n, concurrency):
        for name, prompt in prompts.items():
            results[name] += await asyncio.gather(*(one(prompt, r + j) for j in range(concurrency)))
    await wiring.shadow.wait()
    base99 = float(np.percentile(results["plain"], 99)) * 1000
    store = "redis" if redis_url else "memory"
    print(f"{n} requests per case, concurrency {concurrency}, registry in {store}")
    for name, values in results.items():
        p50, p99 = (float(np.percentile(values, q)) * 1000 for q in (50, 99))
        print(f"  {name:<11} p50 {p50:6.2f} ms  p99 {p99:6.2f} ms  added p99 {p99 - base99:+6.2f} ms")
    print(f"  shadow runs: {wiring.shadow.counts}")
    if redis_url:
        import redis

        client = redis.Redis.from_url(redis_url)
        keys = list(client.scan_iter(match=f"{prefix}:*"))
        if keys:
            client.delete(*keys)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--redis-url", default=None)
    args = parser.parse_args()
    prefix = f"llmgw-bench-prompts:{uuid.uuid4().hex[:8]}"
    asyncio.run(run(args.requests, args.concurrency, args.redis_url, prefix, build(args.redis_url, prefix)))


if __name__ == "__main__":
    main()
