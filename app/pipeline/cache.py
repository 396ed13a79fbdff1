"""Stage ``cache``: exact or verified semantic hit -> the answer (replayed as chunks); a miss registers
the store of the answer once it has completed (read-your-writes within this ingress replica).

A cache failure is a miss, never an error. Streams from the cache look like generated ones.
"""

from __future__ import annotations

import asyncio
import logging
import time

from app.caching.entries import CachedResponse, CacheHit
from app.caching.keys import CacheQuery, context_key, exact_key
from app.caching.settings import CacheConfig
from app.generation import GenerationChunk
from app.memo import LRUMemo
from app.observability import metrics
from app.observability.tracing import start_span
from app.pending_writes import PendingWrites
from app.pipeline.backends import CacheClient
from app.pipeline.context import Answer, RequestContext
from app.pipeline.route import tenant_option
from app.sse import replay, split_text

logger = logging.getLogger(__name__)


def cache_query(ctx: RequestContext) -> CacheQuery:
    gen = ctx.gen
    return CacheQuery(
        tenant=gen.tenant, model=gen.model, system_prompt=gen.system_prompt(), messages=gen.messages or [],
        prompt=gen.prompt, sampling=gen.sampling.as_dict(), prompt_version=ctx.prompt_version,
        embedding=None if ctx.decision is None else ctx.decision.embedding,
        strictness=tenant_option(ctx, "cache.strictness", None),  # the tenant's operating point, if any
    )


def hit_answer(hit: CacheHit) -> Answer:
    r = hit.response
    pieces = split_text(r.text)
    final = GenerationChunk("", r.finish_reason, r.prompt_tokens, r.completion_tokens, r.model)
    first = GenerationChunk(pieces[0], None, r.prompt_tokens, 0, r.model)
    return Answer(first, replay(first, pieces[1:], final), path="cache", source="cache")


class Cache:
    name = "cache"

    def __init__(self, client: CacheClient, lookup_timeout_s: float = 2.0, overlap: bool = False,
                 config: CacheConfig | None = None) -> None:
        self.client = client
        self.timeout = lookup_timeout_s
        self.overlap = overlap  # race the lookup against a pool's generation (ingress.overlap_checks)
        self.pending = PendingWrites()  # stores sent after the answer, awaited by lookups of the same context
        cfg = config or CacheConfig()
        self.cfg = cfg
        # exact keys this replica stored (-> expiry): a likely exact hit is looked up first, never raced
        self.stored: LRUMemo[float] = LRUMemo(8192)
        # the near cache: exact answers this replica stored or was served (-> expiry, answer), cache.near_ttl_s
        self.near: LRUMemo[tuple[float, CacheHit]] = LRUMemo(cfg.near_max_entries if cfg.exact_enabled else 0)

    def clear_near(self) -> None:
        """After an invalidation or flush through this replica: nothing stale is served from here."""
        self.near = LRUMemo(self.near.maxsize)

    def _near_allowed(self, tenant: str) -> bool:
        protection = self.cfg.protection.get(tenant, self.cfg.protection.get("*", "none"))
        return self.near.maxsize > 0 and self.cfg.near_ttl_s > 0 and protection != "redact"

    def _remember(self, key: str, hit: CacheHit) -> None:
        self.near.put(key, (time.monotonic() + min(self.cfg.near_ttl_s, self.cfg.ttl_seconds), hit))

    async def __call__(self, ctx: RequestContext) -> None:
        if ctx.cache_status != "pending":
            return
        query = cache_query(ctx)  # without the deferred embedding: enough for the exact key
        key = exact_key(query)  # once per request: the near cache and the stored-here hint share it
        if self._near_allowed(ctx.tenant) and self._near_hit(ctx, query, key):
            return
        if self.overlap and ctx.candidates and ctx.candidates[0].kind == "pool" and not self._likely_hit(key):
            ctx.lookup = asyncio.create_task(self._decide(ctx))  # generate awaits it (app.pipeline.gates)
            return
        ctx.answer = await self._decide(ctx)

    async def _decide(self, ctx: RequestContext) -> Answer | None:
        """The cached answer, or None after registering the store of the generated one."""
        if ctx.embedding is not None:  # deferred by the route stage (overlap_checks)
            ctx.decision = (await ctx.embedding)[1]
        query = cache_query(ctx)
        ctx.cache_query = query
        hit = await self._lookup(query)
        metrics.observe_cache("hit" if hit is not None else "miss", hit.layer if hit is not None else None)
        if hit is not None:
            self._hit(ctx, hit)
            if hit.layer == "exact" and self._near_allowed(ctx.tenant):
                self._remember(exact_key(query), hit)
            return hit_answer(hit)
        ctx.cache_status = "miss"
        ctx.on_finish(self._store_when_done)
        return None

    def _likely_hit(self, key: str) -> bool:
        expires = self.stored.get(key)
        return expires is not None and expires > time.monotonic()

    def _near_hit(self, ctx: RequestContext, query: CacheQuery, key: str) -> bool:
        found = self.near.get(key)
        if found is None or found[0] <= time.monotonic():
            return False
        hit = found[1]
        ctx.cache_query = query
        with start_span("cache.near", attributes={"cache": "hit-exact"}):  # the hop it saved has no span
            pass
        metrics.observe_cache("hit", "near")
        self._hit(ctx, hit)
        ctx.answer = hit_answer(hit)
        return True

    @staticmethod
    def _hit(ctx: RequestContext, hit: CacheHit) -> None:
        ctx.cache_status = f"hit-{hit.layer}"
        ctx.response_headers["x-llmgw-cache"] = ctx.cache_status
        ctx.response_headers["x-llmgw-model"] = hit.response.model

    async def _lookup(self, query: CacheQuery) -> CacheHit | None:
        try:
            await self.pending.wait(context_key(query))  # this replica's own stores in flight land first
            return await asyncio.wait_for(self.client.lookup(query), self.timeout)
        except Exception as exc:  # a cache failure is a miss, never an error
            logger.warning("cache lookup failed: %s", type(exc).__name__)
            return None

    async def _store_when_done(self, ctx: RequestContext) -> None:
        last, answer = ctx.final, ctx.answer
        if (ctx.error is not None or ctx.aborted or last is None or answer is None or answer.source != "generated"
                or not ctx.text or last.finish_reason not in ("stop", "length")
                or ctx.extras.get("no_store")):
            return
        query = ctx.cache_query
        response = CachedResponse(ctx.text, last.finish_reason, last.prompt_tokens, last.completion_tokens,
                                  last.model, time.time())
        key = exact_key(query)
        self.stored.put(key, time.monotonic() + self.cfg.ttl_seconds)
        if self._near_allowed(query.tenant):
            self._remember(key, CacheHit(response, "exact"))
        self.pending.schedule(context_key(query), lambda: self._store(query, response))()

    async def _store(self, query: CacheQuery, response: CachedResponse) -> None:
        try:
            await self.client.store(query, response)
        except Exception as exc:
            logger.warning("cache store failed: %s", type(exc).__name__)

    async def wait_pending(self) -> None:
        await self.pending.wait()
