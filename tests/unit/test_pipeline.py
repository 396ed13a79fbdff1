"""The ingress pipeline with in-process backends: stage order, short-circuit on a cache hit, finishers run
exactly once (answer, error, client gone), effective_max_tokens, key scopes, effective temperature."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from app.caching.entries import CachedResponse, CacheHit
from app.config import GatewayConfig
from app.errors import ContextLengthError, PermissionDeniedError, ServiceUnavailableError
from app.generation import GenerationChunk
from app.observability.request_log import RequestLogger
from app.observability.settings import RequestLogConfig
from app.pipeline.build import build_pipeline
from app.pipeline.context import Principal, RequestContext
from app.resilience.breaker import BreakerRegistry
from app.route_decision import RouteDecision
from tests.conftest import ROOT

MODELS = ROOT / ".cache" / "models"


def config(**extra) -> GatewayConfig:
    pools = [{"name": n, "engine": {"model": str(MODELS / f"tiny-{n}"), "served_model_name": f"tiny-{n}",
                                     "max_model_len": 128}} for n in ("small", "large")]
    guardrails = {"input": {"injection": {"enabled": False}}}  # the classifier has tests of its own
    return GatewayConfig.model_validate({"pools": pools, "ingress": {"default_max_tokens": 16},
                                         "guardrails": guardrails, **extra})


class Pools:
    def __init__(self, fail: set[str] | None = None, words: int = 3) -> None:
        self.calls: list[tuple[str, int | None, float]] = []
        self.fail = fail or set()
        self.words = words
        self.cancelled = 0

    async def generate(self, pool: str, req) -> GenerationChunk:
        self.calls.append((pool, req.sampling.max_tokens, req.sampling.temperature))
        if pool in self.fail:
            raise ServiceUnavailableError("down")
        return GenerationChunk("w " * self.words, "stop", 5, self.words, f"tiny-{pool}")

    def stream(self, pool: str, req) -> AsyncIterator[GenerationChunk]:
        self.calls.append((pool, req.sampling.max_tokens, req.sampling.temperature))
        outer = self

        async def gen():
            try:
                for i in range(outer.words):
                    await asyncio.sleep(0)
                    yield GenerationChunk("w ", "stop" if i == outer.words - 1 else None, 5, i + 1, f"tiny-{pool}")
            except (GeneratorExit, asyncio.CancelledError):
                outer.cancelled += 1
                raise
        return gen()


class Router:
    def __init__(self, pool: str = "large") -> None:
        self.pool, self.calls = pool, 0

    async def analyze(self, text: str, classify: bool, large_share=None, turns=1) -> RouteDecision:
        self.calls += 1
        return RouteDecision(self.pool, 0.9, None, "classifier")


class Cache:
    def __init__(self) -> None:
        self.entries: dict[str, CachedResponse] = {}

    async def lookup(self, query):
        r = self.entries.get(query.last_user_text())
        return CacheHit(r, "exact") if r is not None else None

    async def store(self, query, response) -> None:
        self.entries[query.last_user_text()] = response

    async def stale_lookup(self, query, min_similarity):
        return None


class Counting:
    name = "counting"

    def __init__(self) -> None:
        self.seen: list[tuple[int, str | None, bool]] = []

    async def __call__(self, ctx: RequestContext) -> None:
        self.seen.append((ctx.status, ctx.error.code if ctx.error else None, ctx.aborted))


def make(cfg=None, pools=None, router=None, cache=None):
    cfg = cfg or config()
    pools = pools or Pools()
    pipe = build_pipeline(cfg, router=router or Router(), cache=cache, pools=pools, providers=None,
                          breakers=BreakerRegistry(cfg.fallback.breaker),
                          request_log=RequestLogger(RequestLogConfig()))
    counting = Counting()
    pipe.finishers = [*pipe.finishers, counting]
    return pipe, pools, counting


def ctx_for(body: dict, endpoint="chat") -> RequestContext:
    return RequestContext(endpoint=endpoint, path="/v1/chat/completions", headers={}, body=body)


def chat(text="hello there", **kw) -> dict:
    return {"model": "auto", "messages": [{"role": "user", "content": text}], **kw}


async def drain(pipe, ctx) -> str:
    answer = await pipe.run(ctx)
    async for _ in answer.rest:
        pass
    return ctx.text


async def test_stages_in_order_and_finish_once() -> None:
    pipe, pools, counting = make()
    assert [s.name for s in pipe.stages] == ["parse", "authenticate", "scope", "admit", "render_prompt", "route",
                                             "tokens", "guard_input", "reserve", "generate"]
    assert [s.name for s in pipe.output_stages] == ["structured_output", "guard_output"]
    assert [s.name for s in pipe.finishers] == ["settle", "prompt_outcome", "log", "counting"]
    ctx = ctx_for(chat())
    text = await drain(pipe, ctx)
    assert text == "w w w " and pools.calls == [("large", 16, 1.0)]  # auto -> router's pool; default max_tokens
    assert counting.seen == [(200, None, False)]
    assert ctx.response_headers["x-llmgw-path"] == "pool:large" and ctx.cost_usd is not None


@pytest.mark.parametrize("overlap", [False, True])
async def test_cache_hit_short_circuits_generate_and_refunds_cost(overlap: bool) -> None:
    cache = Cache()
    pipe, pools, counting = make(cfg=config(ingress={"default_max_tokens": 16, "overlap_checks": overlap}),
                                 cache=cache)
    await drain(pipe, ctx_for(chat(temperature=0)))
    for _ in range(20):  # the store runs in a task after the answer
        if cache.entries:
            break
        await asyncio.sleep(0.01)
    ctx = ctx_for(chat(temperature=0))
    assert await drain(pipe, ctx) == "w w w "
    # overlapped too: this replica stored that exact prompt, so it is looked up first, not raced by the pool
    assert ctx.cache_status == "hit-exact" and len(pools.calls) == 1 and ctx.cost_usd == 0.0
    assert ctx.answer.source == "cache" and "x-llmgw-path" not in ctx.response_headers
    assert counting.seen[-1] == (200, None, False)


async def test_error_runs_finishers_with_status() -> None:
    pipe, _, counting = make(pools=Pools(fail={"small", "large"}))
    cfg_chain = pipe.stage("generate").config.fallback
    assert "stale_cache" in cfg_chain.chain
    with pytest.raises(ServiceUnavailableError):
        await pipe.run(ctx_for(chat()))
    assert counting.seen == [(503, "service_unavailable", False)]


async def test_client_gone_mid_stream_finishes_once_and_cancels_upstream() -> None:
    pools = Pools(words=50)
    pipe, _, counting = make(pools=pools)
    ctx = ctx_for(chat(stream=True))
    answer = await pipe.run(ctx)
    await anext(answer.rest)
    await anext(answer.rest)
    await answer.rest.aclose()  # what Starlette does when the client disconnects
    for _ in range(50):
        if counting.seen:
            break
        await asyncio.sleep(0.01)
    assert counting.seen == [(200, None, True)] and ctx.aborted
    assert ctx.final.completion_tokens == 2  # billed for what it produced: the two chunks read


async def test_effective_max_tokens() -> None:
    pipe, pools, _ = make()
    ctx = ctx_for(chat(max_tokens=40))
    await drain(pipe, ctx)
    assert ctx.max_tokens == 40 and pools.calls[-1][1] == 40
    with pytest.raises(ContextLengthError) as err:  # the client's value cannot fit: blame max_tokens
        await pipe.run(ctx_for(chat(max_tokens=120)))
    assert err.value.param == "max_tokens"
    long_prompt = " ".join(["word"] * 400)
    with pytest.raises(ContextLengthError) as err:  # no max_tokens sent: blame the prompt, not a default
        await pipe.run(ctx_for(chat(long_prompt)))
    assert err.value.param == "messages" and "max_tokens" not in err.value.message
    ctx = ctx_for(chat(" ".join(["word"] * 50)))
    await drain(pipe, ctx)  # default 16, unless the context leaves less
    assert ctx.max_tokens == min(16, 128 - ctx.prompt_tokens)


async def test_omitted_temperature_is_one_for_sampling_and_for_the_cache_rule() -> None:
    cache = Cache()
    pipe, pools, _ = make(cfg=config(cache={"max_temperature": 0.5}), cache=cache)
    ctx = ctx_for(chat())
    await drain(pipe, ctx)
    assert pools.calls[-1][2] == 1.0 and ctx.cache_status == "bypass"
    ctx = ctx_for(chat(temperature=0.2))
    await drain(pipe, ctx)
    assert ctx.cache_status == "miss"


class AsKey:
    name = "authenticate"

    def __init__(self, models: tuple[str, ...]) -> None:
        self.models = models

    async def __call__(self, ctx: RequestContext) -> None:
        ctx.principal = Principal("t1", key_id="k1", models=self.models)


async def test_key_scope_deny_by_default_and_fallback_only_to_allowed_pools() -> None:
    pipe, _, _ = make(pools=Pools(fail={"large"}))
    stages = list(pipe.stages)
    stages[1] = AsKey(())  # a key with no allowed models may call none
    pipe.stages = stages
    with pytest.raises(PermissionDeniedError):
        await pipe.run(ctx_for({**chat(), "model": "small"}))
    stages[1] = AsKey(("tiny-large",))
    ctx = ctx_for({**chat(), "model": "large"})
    with pytest.raises(ServiceUnavailableError):  # large is down and small is out of scope: no fallback to it
        await pipe.run(ctx)
    assert [c.name for c in ctx.candidates] == ["pool:large", "stale_cache"]
    stages[1] = AsKey(("tiny-*",))
    ctx = ctx_for({**chat(), "model": "large"})
    await drain(pipe, ctx)
    assert ctx.response_headers["x-llmgw-path"] == "pool:small"


async def test_logprobs_bypass_the_cache_and_formats_never_share_entries() -> None:
    from app.caching.keys import scope_key
    from app.pipeline.cache import cache_query

    class Json(Pools):
        async def generate(self, pool: str, req) -> GenerationChunk:
            return GenerationChunk("{}", "stop", 5, 1, f"tiny-{pool}")

    cache = Cache()
    pipe, _, _ = make(cache=cache, pools=Json())
    ctx = ctx_for(chat(temperature=0, logprobs=True))
    await drain(pipe, ctx)
    assert ctx.cache_status == "bypass"  # a stored text has no logprobs to replay
    plain, fmt = ctx_for(chat(temperature=0)), ctx_for(chat(temperature=0, response_format={"type": "json_object"}))
    for c in (plain, fmt):
        await drain(pipe, c)
    assert scope_key(cache_query(plain)) != scope_key(cache_query(fmt))
