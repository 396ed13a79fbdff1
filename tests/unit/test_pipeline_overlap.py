"""``ingress.overlap_checks``: the injection classifier and the cache lookup run beside a pool's generation.

What must hold: the pool starts before the slow check ends; nothing (no first chunk, no provider call)
leaves before the checks passed; a block cancels the speculative generation and is the request's error
even when the generation failed beside it; a cache hit that arrives late still wins; off, it is strictly
sequential (a blocked request never reaches a pool).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from app.caching.entries import CachedResponse, CacheHit
from app.errors import ContentPolicyError
from app.generation import GenerationChunk
from app.observability.request_log import RequestLogger
from app.observability.settings import RequestLogConfig
from app.pipeline.build import build_pipeline
from app.resilience.breaker import BreakerRegistry
from tests.unit.test_pipeline import Counting, Pools, config, ctx_for

PROMPT = "please tell me about the weather on mars"


class SlowDetector:
    """An injection scorer that takes ``delay`` seconds (in the guard's worker thread)."""

    def __init__(self, score: float, delay: float = 0.15) -> None:
        self.threshold, self._score, self.delay = 0.5, score, delay
        self.finished_at: float | None = None

    def score(self, text: str, prescreen: bool = True) -> float:
        time.sleep(self.delay)
        self.finished_at = time.perf_counter()
        return self._score


class TimedPools(Pools):
    """Pools that note when each call started; streams of ``words`` chunks."""

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self.started: list[float] = []

    async def generate(self, pool: str, req) -> GenerationChunk:
        self.started.append(time.perf_counter())
        return await super().generate(pool, req)

    def stream(self, pool: str, req) -> AsyncIterator[GenerationChunk]:
        self.started.append(time.perf_counter())
        return super().stream(pool, req)


class Providers:
    def __init__(self) -> None:
        self.calls = 0

    def stream(self, req) -> AsyncIterator[GenerationChunk]:
        self.calls += 1

        async def gen():
            yield GenerationChunk("from provider", "stop", 5, 2, "gpt-test")
        return gen()


class LateCache:
    """Answers every lookup with a hit after ``delay`` seconds."""

    def __init__(self, delay: float = 0.1) -> None:
        self.delay = delay

    async def lookup(self, query):
        await asyncio.sleep(self.delay)
        return CacheHit(CachedResponse("cached answer", "stop", 5, 2, "tiny-small", time.time()), "exact")

    async def store(self, query, response) -> None:
        return None

    async def stale_lookup(self, query, min_similarity):
        return None


def build(overlap: bool, action: str = "block", score: float = 0.99, pools=None, providers=None, cache=None,
          delay: float = 0.15):
    extra = {"fallback": {"providers": [{"name": "p", "kind": "openai", "base_url": "http://127.0.0.1:9/v1",
                                         "model": "gpt-test", "api_key_env": "NO_SUCH_KEY"}]},
             "policy": {"free_models": ["gpt-test"]}} if providers else {}
    cfg = config(ingress={"default_max_tokens": 16, "overlap_checks": overlap},
                 guardrails={"input": {"injection": {"enabled": True, "action": action, "patterns": False}}},
                 **extra)
    pools = pools or TimedPools(words=40)
    pipe = build_pipeline(cfg, router=None, cache=cache, pools=pools, providers=providers,
                          breakers=BreakerRegistry(cfg.fallback.breaker), request_log=RequestLogger(RequestLogConfig()))
    detector = SlowDetector(score, delay)
    pipe.stage("guard_input").guardrails.input_guard().detector = detector
    counting = Counting()
    pipe.finishers = [*pipe.finishers, counting]
    return pipe, pools, detector, counting


def chat(stream: bool = False, **kw) -> dict:
    return {"model": "small", "messages": [{"role": "user", "content": PROMPT}], "stream": stream, **kw}


@pytest.mark.parametrize("stream", [False, True])
async def test_the_pool_starts_before_the_classifier_ends_and_the_answer_waits_for_it(stream: bool) -> None:
    pipe, pools, detector, counting = build(overlap=True, action="flag")
    ctx = ctx_for(chat(stream))
    answer = await pipe.run(ctx)
    returned_at = time.perf_counter()
    assert pools.started and pools.started[0] < detector.finished_at <= returned_at
    async for _ in answer.rest:
        pass
    assert "injection" in ctx.response_headers.get("x-llmgw-guardrail", "")  # the gate's decision is kept
    assert counting.seen == [(200, None, False)]


@pytest.mark.parametrize("stream", [False, True])
async def test_a_block_cancels_the_speculative_generation_and_no_text_leaves(stream: bool) -> None:
    pipe, pools, _, counting = build(overlap=True)
    ctx = ctx_for(chat(stream))
    with pytest.raises(ContentPolicyError):
        await pipe.run(ctx)
    assert len(pools.calls) == 1  # it had started...
    if stream:
        assert pools.cancelled == 1  # ...and was stopped
    assert ctx.answer is None and ctx.text == ""
    assert counting.seen == [(400, "content_policy_violation", False)]


async def test_off_it_is_sequential_a_blocked_request_reaches_no_pool() -> None:
    pipe, pools, _, counting = build(overlap=False)
    with pytest.raises(ContentPolicyError):
        await pipe.run(ctx_for(chat(True)))
    assert pools.calls == [] and counting.seen == [(400, "content_policy_violation", False)]


async def test_a_provider_is_never_called_before_the_checks_and_a_block_beats_the_pool_failure() -> None:
    providers = Providers()
    pipe, _, _, counting = build(overlap=True, pools=TimedPools(fail={"small", "large"}), providers=providers)
    with pytest.raises(ContentPolicyError):  # not the 503 the failing pools would give
        await pipe.run(ctx_for(chat()))
    assert providers.calls == 0 and counting.seen == [(400, "content_policy_violation", False)]
    pipe, _, _, _ = build(overlap=True, score=0.0, pools=TimedPools(fail={"small", "large"}), providers=providers)
    ctx = ctx_for(chat())
    answer = await pipe.run(ctx)  # passed: the chain goes on to the provider
    text = answer.first.text + "".join([c.text async for c in answer.rest])
    assert text == "from provider" and providers.calls == 1 and ctx.response_headers["x-llmgw-path"] == "providers"


@pytest.mark.parametrize("stream", [False, True])
async def test_a_late_cache_hit_wins_over_the_speculative_generation(stream: bool) -> None:
    pipe, pools, _, counting = build(overlap=True, score=0.0, cache=LateCache(), delay=0.0)
    ctx = ctx_for(chat(stream, temperature=0))
    answer = await pipe.run(ctx)
    text = answer.first.text + "".join([c.text async for c in answer.rest])
    assert text == "cached answer" and ctx.cache_status == "hit-exact" and ctx.cost_usd == 0.0
    assert len(pools.calls) == 1  # started beside the lookup,
    if stream:
        assert pools.cancelled == 1  # then stopped
    assert counting.seen == [(200, None, False)]
