"""render_prompt + prompt_outcome in the real pipeline (in-process pools as in test_pipeline): rendering,
errors, A/B variants, experiment stats, and shadows that never reach or hurt the served answer."""

from __future__ import annotations

import asyncio

import pytest

from app.errors import InvalidRequestError, NotFoundError
from app.generation import GenerationChunk
from app.observability.cost import cost_usd
from app.pipeline.render_prompt import PromptOutcome, RenderPrompt
from app.prompts.experiment_store import Experiments
from app.prompts.registry import PromptRegistry
from app.prompts.shadow import ShadowRunner
from app.prompts.store import MemoryPromptStore
from tests.prompt_fixtures import template
from tests.unit.test_pipeline import Cache, config, ctx_for, drain, make


async def setup(shadow_generate=None, cache=None):
    cfg = config()
    registry = PromptRegistry(MemoryPromptStore(), cfg.prompts)
    experiments = Experiments(registry)
    await registry.create("acme", "support", template(), labels=["production"])
    await registry.create("acme", "support", template("v2 for {{ customer }} / {{ product }}"))
    pipe, pools, _counting = make(cfg=cfg, cache=cache)
    shadow = ShadowRunner(shadow_generate, experiments) if shadow_generate else None
    outcome = PromptOutcome(cfg, experiments, shadow)
    # the pipeline's own prompt stage and finisher, on this test's registry
    pipe.stages = [RenderPrompt(cfg, registry, experiments) if s.name == "render_prompt" else s for s in pipe.stages]
    pipe.finishers = [outcome if f.name == "prompt_outcome" else f for f in pipe.finishers]
    assert [s.name for s in pipe.stages].index("render_prompt") < [s.name for s in pipe.stages].index("route")
    return pipe, pools, registry, experiments, outcome, shadow


def body(ref: dict, **kw) -> dict:
    return {"model": "small", "messages": [{"role": "user", "content": "my printer is on fire"}], "prompt_ref": ref,
            **kw}


REF = {"name": "support", "variables": {"customer": "Ann", "product": "Ray"}}


def ctx(ref: dict, tenant: str = "acme", **kw):
    c = ctx_for(body(ref, **kw))
    c.headers = {"x-llmgw-tenant": tenant}
    return c


async def test_template_messages_go_first_with_headers_and_cache_scope() -> None:
    pipe, _pools, *_ = await setup()
    c = ctx(REF)
    assert await drain(pipe, c) == "w w w "
    assert c.gen.messages == [{"role": "system", "content": "You help Ann with Ray."},
                              {"role": "user", "content": "Tone: friendly"},
                              {"role": "user", "content": "my printer is on fire"}]
    assert c.response_headers["x-llmgw-prompt"] == "support@1"
    assert c.prompt_version == "acme/support@1"
    assert c.extras["evaluation"]["prompt"]["ref"] == "support@1"
    c = ctx({**REF, "version": 2})
    await drain(pipe, c)
    assert c.gen.messages[0]["content"] == "v2 for Ann / Ray" and c.prompt_version == "acme/support@2"


async def test_prompt_version_is_in_the_cache_scope() -> None:
    cache = Cache()
    pipe, *_ = await setup(cache=cache)
    a, b = ctx({**REF, "version": 1}, temperature=0), ctx({**REF, "version": 2}, temperature=0)
    await drain(pipe, a)
    await drain(pipe, b)
    from app.caching.keys import scope_key
    assert scope_key(a.cache_query) != scope_key(b.cache_query)


async def test_reference_errors() -> None:
    pipe, *_ = await setup()
    with pytest.raises(InvalidRequestError, match="not both"):
        await pipe.run(ctx({**REF, "version": 1, "label": "production"}))
    with pytest.raises(InvalidRequestError, match="Missing prompt variables: product"):
        await pipe.run(ctx({"name": "support", "variables": {"customer": "Ann"}}))
    with pytest.raises(InvalidRequestError, match="Unknown prompt variables: extra"):
        await pipe.run(ctx({**REF, "variables": {**REF["variables"], "extra": 1}}))
    with pytest.raises(NotFoundError, match="Label 'staging'"):
        await pipe.run(ctx({**REF, "label": "staging"}))
    with pytest.raises(NotFoundError, match="Prompt 'support'"):  # another tenant's prompt
        await pipe.run(ctx(REF, tenant="globex"))
    with pytest.raises(InvalidRequestError, match="version"):
        await pipe.run(ctx({**REF, "version": "production"}))


async def test_ab_variants_sticky_per_user_and_counted() -> None:
    pipe, _, _registry, experiments, outcome, _ = await setup()
    exp = await experiments.start("acme", {"name": "tone", "prompt": "support", "key": "user", "variants": [
        {"name": "control", "weight": 50}, {"name": "v2", "weight": 50, "version": 2}]})
    seen = {}
    for i in range(40):
        c = ctx(REF, user=f"user-{i % 10}")
        await drain(pipe, c)
        variant = c.response_headers["x-llmgw-variant"]
        assert variant == exp.assign(f"acme/user-{i % 10}").name
        assert seen.setdefault(i % 10, variant) == variant  # sticky
        expected = "support@2" if variant == "v2" else "support@1"
        assert c.response_headers["x-llmgw-prompt"] == expected
    await asyncio.gather(*outcome.tasks)
    status = await experiments.status("acme", "tone")
    counts = {k: v["requests"] for k, v in status["variants"].items()}
    assert sum(counts.values()) == 40 and all(n > 0 for n in counts.values())
    assert status["variants"]["v2"]["completion_tokens"] == 3 * counts["v2"]
    pinned = ctx({**REF, "version": 1}, user="user-1")  # a pinned version is not part of the experiment
    await drain(pipe, pinned)
    assert "x-llmgw-variant" not in pinned.response_headers


async def test_shadow_output_never_reaches_the_caller_nor_the_cache() -> None:
    calls = []

    async def generate(req):
        calls.append(req)
        return GenerationChunk("SHADOW ANSWER", "stop", 7, 2, "tiny-large")

    cache = Cache()
    pipe, _pools, _, experiments, _, shadow = await setup(generate, cache=cache)
    await experiments.start("acme", {"name": "cand", "prompt": "support",
                                     "shadow": {"version": 2, "model": "large", "sample_rate": 1.0}})
    c = ctx(REF, temperature=0)
    assert await drain(pipe, c) == "w w w "
    await shadow.wait()
    assert len(calls) == 1 and calls[0].model == "large" and calls[0].messages[0]["content"] == "v2 for Ann / Ray"
    assert calls[0].messages[-1]["content"] == "my printer is on fire"
    assert all("SHADOW" not in r.text for r in cache.entries.values())
    assert shadow.counts == {"ok": 1}
    status = await experiments.status("acme", "cand")
    assert status["variants"]["shadow"]["requests"] == 1
    assert status["shadow_spent_usd"] == pytest.approx(cost_usd("tiny-large", 7, 2))


async def test_failing_or_slow_shadow_never_affects_the_served_answer() -> None:
    release = asyncio.Event()

    async def generate(req):
        if req.messages[-1]["content"] == "slow":
            await release.wait()
        raise RuntimeError("candidate broke")

    pipe, _, _, experiments, _, shadow = await setup(generate)
    await experiments.start("acme", {"name": "cand", "prompt": "support",
                                     "shadow": {"version": 2, "sample_rate": 1.0}})
    assert await drain(pipe, ctx(REF)) == "w w w "
    await shadow.wait()
    assert shadow.counts == {"error": 1}
    slow = ctx_for({**body(REF), "messages": [{"role": "user", "content": "slow"}]})
    slow.headers = {"x-llmgw-tenant": "acme"}
    assert await drain(pipe, slow) == "w w w "  # served while the shadow still waits
    assert len(shadow.tasks) == 1
    release.set()
    await shadow.wait()
    assert shadow.counts == {"error": 2}


async def test_shadow_budget_and_concurrency_bound() -> None:
    gate = asyncio.Event()

    async def generate(req):
        await gate.wait()
        return GenerationChunk("x", "stop", 1_000_000, 1_000_000, "gpt-4o")  # priced: spends the budget

    pipe, _, _, experiments, _, shadow = await setup(generate)
    shadow.max_concurrency = shadow.max_pending = 2
    await experiments.start("acme", {"name": "cand", "prompt": "support",
                                     "shadow": {"version": 2, "sample_rate": 1.0, "budget_usd": 0.01}})
    for _ in range(4):
        await drain(pipe, ctx(REF))
    assert len(shadow.tasks) == 2 and shadow.counts == {"skipped_busy": 2}
    gate.set()
    await shadow.wait()
    await drain(pipe, ctx(REF))
    await shadow.wait()
    assert shadow.counts["ok"] == 2 and shadow.counts["skipped_budget"] == 1


async def test_experiment_models_are_checked_and_restart_resets_stats() -> None:
    from app.pipeline.render_prompt import build_prompt_wiring

    wiring = build_prompt_wiring(config())
    await wiring.registry.create("acme", "p", template(), labels=["production"])
    with pytest.raises(InvalidRequestError, match="Unknown model 'gpt-9'"):
        await wiring.experiments.start("acme", {"name": "e", "prompt": "p",
                                                "variants": [{"name": "a", "weight": 1, "model": "gpt-9"}]})
    exp = await wiring.experiments.start("acme", {"name": "e", "prompt": "p", "variants": [
        {"name": "a", "weight": 1, "model": "large"}]})
    from app.prompts.experiment_store import Outcome
    await wiring.experiments.record_outcome(exp, "a", Outcome(latency_ms=30))
    assert (await wiring.experiments.status("acme", "e"))["variants"]["a"]["requests"] == 1
    await wiring.experiments.stop("acme", "e")
    await wiring.experiments.start("acme", {"name": "e", "prompt": "p", "variants": [{"name": "a", "weight": 1}]})
    assert (await wiring.experiments.status("acme", "e"))["variants"]["a"]["requests"] == 0


async def test_attach_shadow_after_the_backends_exist() -> None:
    from app.pipeline.render_prompt import build_prompt_wiring

    wiring = build_prompt_wiring(config())
    assert wiring.shadow is None and wiring.outcome.shadow is None

    async def generate(req):
        return "x"

    runner = wiring.attach_shadow(generate)
    assert wiring.outcome.shadow is runner and runner.max_concurrency == config().prompts.shadow.max_concurrency


async def test_template_model_and_sampling_fill_only_what_the_client_left_unset() -> None:
    pipe, _pools, registry, *_ = await setup()
    await registry.create("acme", "tuned", {**template(), "model": "large",
                                            "sampling": {"temperature": 0.2, "max_tokens": 5, "stop": ["END"]}},
                          labels=["production"])
    ref = {**REF, "name": "tuned"}
    c = ctx(ref, model="auto")
    await drain(pipe, c)
    assert c.pool == "large" and c.parsed.model == "large"
    assert (c.gen.sampling.temperature, c.gen.sampling.max_tokens, c.gen.sampling.stop) == (0.2, 5, ["END"])
    c = ctx(ref, temperature=0.9, max_tokens=3)  # model "small" named by the client: kept, as are its settings
    await drain(pipe, c)
    assert c.pool == "small" and (c.gen.sampling.temperature, c.gen.sampling.max_tokens) == (0.9, 3)
