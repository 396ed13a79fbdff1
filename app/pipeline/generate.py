"""Stage ``generate``: run the fallback chain over the route's candidates until one step answers.

Steps: each allowed pool (breaker, retries, first-chunk timeout for streams), the providers (their own
chain in the fallback deployment), the stale cache (degraded). Pool attempts get a fresh engine
request id each (a retried id may still be known upstream).
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import time
from collections.abc import AsyncIterator

from app.config import GatewayConfig
from app.errors import UpstreamError
from app.generation import GenerationChunk, GenerationRequest
from app.observability import metrics
from app.pipeline.backends import CacheClient, PoolClient, ProviderClient
from app.pipeline.context import Answer, RequestContext
from app.pipeline.gates import discard, hold
from app.resilience.breaker import BreakerRegistry
from app.resilience.chain import ChainResult, Step, run_chain


class Generate:
    name = "generate"

    def __init__(self, config: GatewayConfig, pools: PoolClient, providers: ProviderClient | None,
                 cache: CacheClient | None, breakers: BreakerRegistry, pending=None) -> None:
        self.config = config
        self.pools = pools
        self.providers = providers
        self.cache = cache
        self.breakers = breakers
        self.pending = pending  # app.pending_writes.PendingWrites of the cache stage (stale lookups wait)
        self._attempt = itertools.count()
        kinds = {p.kind for p in config.fallback.providers}
        # what the providers step can honour: OpenAI's wire has logprobs/logit_bias, Anthropic's has not
        self.provider_capabilities = frozenset({"tools", "response_format"} | (
            {"logprobs", "logit_bias"} if kinds == {"openai"} else set()))

    def _fresh(self, req: GenerationRequest) -> GenerationRequest:
        return dataclasses.replace(req, request_id=f"{req.request_id}-{next(self._attempt)}")

    def _pool_step(self, pool: str, req: GenerationRequest, stream: bool) -> Step:
        timeout = self.config.ingress.request_timeout_s

        async def unary() -> AsyncIterator[GenerationChunk]:
            yield await asyncio.wait_for(self.pools.generate(pool, self._fresh(req)), timeout)

        def open_stream():
            return self.pools.stream(pool, self._fresh(req)) if stream else unary()

        first_timeout = self.config.fallback.pool_first_chunk_timeout_s if stream else None
        return Step(f"pool:{pool}", open_stream, self.breakers.get(f"pool:{pool}"), first_chunk_timeout_s=first_timeout)

    def steps(self, ctx: RequestContext) -> list[Step]:
        req, steps = ctx.gen, []
        providers_added = False
        for cand in ctx.candidates:
            if cand.kind == "pool":
                steps.append(self._pool_step(cand.name.removeprefix("pool:"), req, ctx.stream))
            elif cand.kind == "provider" and self.providers is not None and not providers_added:
                providers_added = True  # the fallback deployment runs the providers' own chain
                steps.append(Step("providers", lambda: self.providers.stream(req), retry=False,
                                  capabilities=self.provider_capabilities, before=lambda: hold(ctx)))
            elif (cand.kind == "stale_cache" and self.cache is not None
                  and (ctx.cache_query is not None or ctx.lookup is not None)):  # a racing lookup sets it
                # a stored text answer honours no tool call, format or logprobs request
                steps.append(Step("stale_cache", lambda: self._stale(ctx), retry=False, degraded=True,
                                  capabilities=frozenset(), before=lambda: hold(ctx)))
        return steps

    async def _stale(self, ctx: RequestContext) -> AsyncIterator[GenerationChunk]:
        from app.caching.keys import context_key

        if self.pending is not None:
            await self.pending.wait(context_key(ctx.cache_query))
        hit = await self.cache.stale_lookup(ctx.cache_query, self.config.fallback.stale_min_similarity)
        if hit is None:
            raise UpstreamError("no cached answer close enough", code="no_stale_answer")
        r = hit.response
        yield GenerationChunk(r.text, r.finish_reason, r.prompt_tokens, r.completion_tokens, r.model)

    async def __call__(self, ctx: RequestContext) -> None:
        if ctx.lookup is None:
            return self._answer(ctx, await self._chain(ctx))
        chain = asyncio.create_task(self._chain(ctx))  # the pool starts while the cache looks (overlap_checks)
        try:
            hit = await ctx.lookup
        except BaseException:
            chain.cancel()
            raise
        if hit is None:
            return self._answer(ctx, await chain)
        await _drop(chain)  # the cached answer wins, as if the lookup had run first
        ctx.answer = hit

    async def _chain(self, ctx: RequestContext) -> ChainResult:
        cfg = self.config.fallback
        return await run_chain(self.steps(ctx), cfg.retry, cfg.unavailable_retry_after_s, needs=ctx.gen.needs())

    def _answer(self, ctx: RequestContext, result: ChainResult) -> None:
        ctx.first_token_at = time.perf_counter()
        metrics.observe_path(result.path, fallback=result.path != f"pool:{ctx.pool}")
        ctx.response_headers["x-llmgw-path"] = result.path
        if ctx.cache_status == "pending":
            ctx.cache_status = "miss"
        if result.degraded:
            ctx.cache_status = "stale"
            ctx.response_headers["x-llmgw-degraded"] = "stale-cache"
        ctx.response_headers["x-llmgw-cache"] = ctx.cache_status
        source = "stale_cache" if result.degraded else "generated"
        ctx.answer = Answer(result.first, result.rest, result.path, source, result.cancel)


async def _drop(chain: asyncio.Task) -> None:
    """Stop a generation that lost the race to a cache hit (running or already answering)."""
    if not chain.done():
        chain.cancel()
    try:
        result = await chain
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise  # we are being cancelled ourselves, not just the chain
        return
    except Exception:  # the generation failed or lost to a hit (LookupHit): the cached answer stands
        return
    await discard(Answer(result.first, result.rest, result.path, cancel=result.cancel))
