"""The policy stages in the real pipeline (parse → authenticate → admit → route → tokens → reserve →
generate ⟶ settle → log) with in-process backends: 429s, budgets, aborted streams, cache savings, no leaks."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time

import pytest

from app.config import GatewayConfig
from app.errors import GatewayError
from app.generation import GenerationChunk
from app.observability import metrics
from app.observability.request_log import RequestLogger
from app.observability.settings import RequestLogConfig
from app.pipeline.admit import Admit
from app.pipeline.authenticate import Authenticate
from app.pipeline.context import Answer, RequestContext
from app.pipeline.generate import Generate
from app.pipeline.log import Log
from app.pipeline.parse import Parse
from app.pipeline.pipeline import Pipeline
from app.pipeline.reserve import Reserve
from app.pipeline.route import Route
from app.pipeline.settle import Settle
from app.pipeline.tokens import CountTokens
from app.policy.admin_models import KeyCreate
from app.policy.factory import build_policy
from app.resilience.breaker import BreakerRegistry
from tests.unit.policy_redis import policy_redis_fixture  # noqa: F401  (the redis_prefix fixture)

POOLS = [{"name": "small", "engine": {"model": "/nonexistent/tiny-small", "served_model_name": "tiny-small"}},
         {"name": "large", "engine": {"model": "/nonexistent/tiny-large", "served_model_name": "tiny-large"}}]


class Pools:
    """In-process pool client: ``n`` tokens of "w ", cumulative counts like the vLLM engine's chunks."""

    def __init__(self, n: int = 20, prompt_tokens: int = 10) -> None:
        self.n, self.prompt_tokens = n, prompt_tokens

    async def generate(self, pool: str, req) -> GenerationChunk:
        return GenerationChunk("w " * self.n, "stop", self.prompt_tokens, self.n, f"tiny-{pool}")

    async def stream(self, pool: str, req):
        for i in range(self.n):
            await asyncio.sleep(0)
            yield GenerationChunk("w ", "length" if i == self.n - 1 else None, self.prompt_tokens, i + 1,
                                  f"tiny-{pool}")


class CachedAnswer:
    """A stand-in cache stage that answers from the cache (what the cache stage does on a hit)."""

    name = "cache"

    async def __call__(self, ctx: RequestContext) -> None:
        async def rest():
            yield GenerationChunk("", "stop", 10, 20, "tiny-small")

        ctx.cache_status = "hit-exact"
        ctx.answer = Answer(GenerationChunk("cached ", None, 10, 0, "tiny-small"), rest(), "cache", "cache")


def gateway(redis_prefix=None, *, auth: bool = True, cached: bool = False, pools: Pools | None = None, **policy):
    client, prefix = redis_prefix if redis_prefix is not None else (None, "p")
    config = GatewayConfig.model_validate({"pools": POOLS, "auth": {"enabled": auth},
                                           "policy": {"key_prefix": prefix, **policy}})
    svc = build_policy(config, redis=client, environ={})
    stages = [Parse(config), Authenticate(svc), Admit(svc), Route(config, None, cache_enabled=False),
              CountTokens(config), Reserve(svc), *([CachedAnswer()] if cached else []),
              Generate(config, pools or Pools(), None, None, BreakerRegistry(config.fallback.breaker))]
    log = Log(RequestLogger(RequestLogConfig()))
    return svc, Pipeline(stages=stages, finishers=[Settle(svc), log])


def request(key: str | None, *, stream: bool = False, max_tokens: int = 50, model: str = "small",
            tenant: str | None = None) -> RequestContext:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    if tenant:
        headers["x-llmgw-tenant"] = tenant
    body = {"model": model, "messages": [{"role": "user", "content": "hello there, how are you?"}],
            "max_tokens": max_tokens, "stream": stream}
    return RequestContext(endpoint="chat", path="/v1/chat/completions", headers=headers, body=body)


async def run(pipeline: Pipeline, ctx: RequestContext) -> RequestContext:
    answer = await pipeline.run(ctx)
    async for _ in answer.rest:
        pass
    return ctx


async def usage(svc, key_id: str) -> dict[str, int]:
    day = svc.enforcer.calendar.day(svc.clock()).label
    rows = await svc.enforcer.ledger.read([f"key:{key_id}:day:{day}"])
    return rows.get(f"key:{key_id}:day:{day}", {})


async def test_rpm_through_the_stages_admits_exactly_n_with_openai_headers(redis_prefix) -> None:
    svc, pipe = gateway(redis_prefix)
    _record, key = await svc.create_key(KeyCreate(tenant="acme", models=["*"], rpm=5, tpm=100_000), "admin")

    async def one():
        ctx = request(key)
        try:
            await run(pipe, ctx)
            return ctx, None
        except GatewayError as err:
            return ctx, err

    results = await asyncio.gather(*(one() for _ in range(100)))
    ok = [ctx for ctx, err in results if err is None]
    refused = [err for _, err in results if err is not None]
    assert len(ok) == 5 and len(refused) == 95
    assert all(e.status_code == 429 and e.code == "rate_limit_exceeded" and e.error_type == "requests"
               for e in refused)
    assert int(refused[0].headers["retry-after"]) >= 1 and int(refused[0].headers["retry-after-ms"]) > 0
    headers = ok[0].response_headers
    assert headers["x-ratelimit-limit-requests"] == "5" and headers["x-ratelimit-limit-tokens"] == "100000"
    assert {"x-ratelimit-remaining-requests", "x-ratelimit-reset-requests", "x-ratelimit-remaining-tokens",
            "x-ratelimit-reset-tokens"} <= set(headers)


async def test_aborted_stream_pays_its_input_and_the_output_it_produced(redis_prefix) -> None:
    svc, pipe = gateway(redis_prefix, pools=Pools(n=40, prompt_tokens=12))
    record, key = await svc.create_key(KeyCreate(tenant="acme", models=["*"], tpm=10_000), "admin")
    ctx = request(key, stream=True, max_tokens=40)
    started = time.monotonic()
    answer = await pipe.run(ctx)
    rest = answer.rest
    for _ in range(6):  # the first chunk + 6 more: the client saw 7 tokens, then went away
        await rest.__anext__()
    await rest.aclose()
    await asyncio.gather(*pipe._tasks)
    assert ctx.aborted
    row = await usage(svc, record.id)
    assert (row["prompt_tokens"], row["completion_tokens"], row.get("reserved", 0)) == (12, 7, 0)
    price = svc.enforcer.prices.price("tiny-small")
    assert row["spent"] == round((12 * price.input_per_mtok + 7 * price.output_per_mtok) / 1e6 * 1e9)
    assert ctx.cost_usd == pytest.approx(price.cost(12, 7))
    # the tokens-per-minute bucket keeps 12 + 7 of its reservation
    state = await svc.enforcer.limiter.acquire([type(svc.enforcer._subjects(
        svc_identity(ctx), "tokens", 0)[0])(f"key:{record.id}:tpm", "tokens", 10_000, 0)])
    refilled = math.ceil((time.monotonic() - started) * 10_000 / 60) + 1  # the bucket refills 167 tokens/s
    assert 10_000 - 19 <= state.states[0].remaining <= 10_000 - 19 + refilled


def svc_identity(ctx):
    from app.pipeline.authenticate import identity_of

    return identity_of(ctx)


async def test_stream_and_unary_bill_the_same() -> None:
    svc, pipe = gateway(auth=False)
    a = await run(pipe, request(None, stream=True, tenant="t1"))
    b = await run(pipe, request(None, stream=False, tenant="t2"))
    assert a.cost_usd == b.cost_usd > 0 and a.price_version == b.price_version == svc.enforcer.prices.version


async def test_cache_hit_costs_nothing_counts_savings_and_refunds_tokens() -> None:
    svc, pipe = gateway(cached=True, default_tenant={"tpm": 1000})
    record, key = await svc.create_key(KeyCreate(tenant="acme", models=["*"]), "admin")
    ctx = await run(pipe, request(key, max_tokens=400))
    assert ctx.cost_usd == 0 and ctx.savings_usd == pytest.approx(svc.enforcer.prices.cost("tiny-small", 10, 20))
    row = await usage(svc, record.id)
    assert row["spent"] == 0 and row["savings"] > 0 and row.get("reserved", 0) == 0
    for _ in range(5):  # 5 x 400+ tokens would exceed tpm 1000 unless each hit was refunded
        await run(pipe, request(key, max_tokens=400))


async def test_a_request_that_could_never_fit_says_so_without_retry_after() -> None:
    svc, pipe = gateway()
    _, key = await svc.create_key(KeyCreate(tenant="acme", models=["*"], tpm=100), "admin")
    with pytest.raises(GatewayError) as info:
        await run(pipe, request(key, max_tokens=200))
    err = info.value
    assert (err.status_code, err.error_type, err.code) == (429, "tokens", "request_too_large")
    assert err.headers == {"x-should-retry": "false"} and "200 max_tokens" in err.message


async def test_budget_spent_is_insufficient_quota_and_not_retried(redis_prefix) -> None:
    svc, pipe = gateway(redis_prefix, prices={"models": {"tiny-small": [1000.0, 1000.0]}})  # $0.001/token
    _, key = await svc.create_key(KeyCreate(tenant="acme", models=["*"], budget_daily_usd=0.2), "admin")
    await run(pipe, request(key, max_tokens=50))  # reserves (prompt + 50) x $0.001 < $0.2, books 30 tokens
    with pytest.raises(GatewayError) as info:
        for _ in range(10):
            await run(pipe, request(key, max_tokens=50))
    err = info.value
    assert (err.status_code, err.error_type, err.code) == (429, "insufficient_quota", "insufficient_quota")
    assert err.headers["x-should-retry"] == "false" and "retry-after" not in err.headers


async def test_reserve_at_the_highest_priced_candidate_and_refuse_unpriced_models() -> None:
    svc, pipe = gateway(prices={"models": {"tiny-small": [1.0, 1.0], "tiny-large": [100.0, 100.0]}})
    _, key = await svc.create_key(KeyCreate(tenant="acme", models=["*"]), "admin")
    ctx = request(key)
    pipe_stages = pipe.stages[:6]  # up to and including reserve
    for stage in pipe_stages:
        await stage(ctx)
    hold = ctx.extras["reserve"]
    assert hold.worst_model == "tiny-large"  # the fallback to the large pool could be taken
    assert hold.reservation.amount_nusd == round(svc.enforcer.prices.cost("tiny-large", ctx.prompt_tokens, 50) * 1e9)
    unpriced = GatewayConfig.model_validate({"pools": [{**POOLS[0], "name": "custom"}],
                                             "router": {"enabled": False, "default_pool": "custom"}})
    svc2 = build_policy(unpriced, environ={})
    ctx2 = request(None, model="custom")
    for stage in [Parse(unpriced), Authenticate(svc2), Route(unpriced, None, False), CountTokens(unpriced)]:
        await stage(ctx2)
    with pytest.raises(GatewayError) as info:
        await Reserve(svc2)(ctx2)
    assert (info.value.status_code, info.value.code) == (403, "model_not_priced")
    free = unpriced.model_copy(update={"policy": unpriced.policy.model_copy(update={"free_models": ["custom"]})})
    await Reserve(build_policy(free, environ={}))(ctx2)


async def test_tenant_limits_with_auth_off() -> None:
    _svc, pipe = gateway(auth=False, tenants={"heavy": {"rpm": 2}})
    for _ in range(2):
        await run(pipe, request(None, tenant="heavy"))
    with pytest.raises(GatewayError) as info:
        await run(pipe, request(None, tenant="heavy"))
    assert info.value.status_code == 429
    for _ in range(5):
        await run(pipe, request(None, tenant="light"))  # no limit for other tenants


async def test_no_key_in_logs_metric_labels_or_error_bodies(redis_prefix, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    svc, pipe = gateway(redis_prefix)
    record, key = await svc.create_key(KeyCreate(tenant="acme", models=["small"], rpm=2), "admin")
    _, rotated, _ = await svc.rotate_key(record.id, "admin", 0)
    bodies = []
    for k in (key, rotated, rotated, rotated, rotated + "x", "sk-llmgw-" + "B" * 43):
        for model in ("small", "large"):
            try:
                await run(pipe, request(k, model=model))
            except GatewayError as err:
                bodies.append(json.dumps(err.to_dict()) + json.dumps(err.headers))
    await svc.revoke_key(record.id, "admin")
    try:
        await run(pipe, request(rotated))
    except GatewayError as err:
        bodies.append(json.dumps(err.to_dict()))
    assert len(bodies) >= 8
    text = caplog.text + "".join(bodies) + metrics.render_metrics()[0].decode()
    for secret in (key, rotated, key[9:], rotated[9:], record.key_hash):
        assert secret not in text


async def test_batch_lane_lines_skip_the_realtime_limits_but_are_priced() -> None:
    """A batch line runs as its owner (preset principal) and bills on the batch's own reservation."""
    from app.pipeline.context import Principal

    svc, pipe = gateway(auth=True, default_tenant={"rpm": 1, "budget_daily_usd": 0.0})
    record, _ = await svc.create_key(KeyCreate(tenant="acme", models=["*"], rpm=1), "admin")
    for _ in range(3):  # rpm 1 and a $0 budget would refuse all but none of these: the lane is "batch"
        ctx = request(None)
        ctx.principal = Principal(tenant="acme", key_id=record.id, key=record, models=("*",))
        ctx.extras["lane"] = "batch"
        await run(pipe, ctx)
        assert ctx.cost_usd > 0 and ctx.price_version == svc.enforcer.prices.version
    assert await usage(svc, record.id) == {}
