"""Stage ``route``: the pool to use, the fallback candidates the key may use, and the prompt's embedding.

``model: auto`` asks the router (embedding + classifier); an explicit model maps to its pool. The
router's verdict is remembered per prompt text (a repeated prompt skips the router hop). The
embedding is also fetched for explicit models when the semantic cache will need it.
"""

from __future__ import annotations

import asyncio
import fnmatch
import logging

from app.caching.bypass import should_bypass
from app.config import GatewayConfig
from app.errors import PermissionDeniedError
from app.memo import LRUMemo
from app.observability import metrics
from app.pipeline.backends import RouterClient
from app.pipeline.build_request import effective_temperature, generation_request
from app.pipeline.context import Candidate, Principal, RequestContext
from app.route_decision import RouteDecision, embedding_only, memoizable, route_headers

logger = logging.getLogger(__name__)


def allows(principal: Principal | None, names: tuple[str, ...]) -> bool:
    """Deny by default: a key may use a target only if one of its names matches an allowed pattern."""
    if principal is None or principal.models is None:
        return True
    return any(fnmatch.fnmatchcase(n, p) for p in principal.models for n in names)


def tenant_option(ctx: RequestContext, path: str, default):
    """A per-tenant option from the tenant record (``options`` dict, dotted path), else ``default``."""
    record = ctx.principal.tenant_record if ctx.principal is not None else None
    node = getattr(record, "options", None) or {}
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node


class ModelScope:
    """Stage ``scope``: an explicitly named model the key may not use is a 403 before any limit is spent."""

    name = "scope"

    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        self.names = config.model_names()

    async def __call__(self, ctx: RequestContext) -> None:
        pool = self.names.get(ctx.parsed.model)
        if pool:
            p = self.config.pool(pool)
            if not allows(ctx.principal, (ctx.parsed.model, p.name, p.engine.name, *p.aliases)):
                raise PermissionDeniedError(f"This API key may not use the model '{ctx.parsed.model}'.",
                                            param="model", code="model_not_allowed")


class Route:
    name = "route"

    def __init__(self, config: GatewayConfig, router: RouterClient | None, cache_enabled: bool,
                 overlap: bool = False) -> None:
        self.config = config
        self.router = router
        self.cache_enabled = cache_enabled
        self.overlap = overlap  # an explicit model's embedding (for the cache) computed beside generation
        self.names = config.model_names()
        self.decisions: LRUMemo[RouteDecision] = LRUMemo(2048)

    def _pool_names(self, pool: str) -> tuple[str, ...]:
        p = self.config.pool(pool)
        return (p.name, p.engine.name, *p.aliases)

    def candidates(self, pool: str, principal: Principal | None) -> list[Candidate]:
        """The fallback chain's steps for ``pool``, in order, keeping only what the key may use."""
        out: list[Candidate] = []
        for kind in self.config.fallback.chain:
            if kind == "routed_pool":
                out.append(Candidate(f"pool:{pool}", self.config.pool(pool).engine.name, "pool"))
            elif kind == "other_pool":
                out += [Candidate(f"pool:{p.name}", p.engine.name, "pool") for p in self.config.pools
                        if p.name != pool and allows(principal, self._pool_names(p.name))]
            elif kind == "providers":
                out += [Candidate(f"provider:{p.name}", p.model, "provider") for p in self.config.fallback.providers
                        if allows(principal, (p.model, f"provider:{p.name}"))]
            elif kind == "stale_cache":
                out.append(Candidate("stale_cache", "", "stale_cache"))
        return out

    async def __call__(self, ctx: RequestContext) -> None:
        parsed = ctx.parsed
        ctx.gen = generation_request(parsed, ctx.request_id, ctx.tenant)
        explicit = self.names[parsed.model]
        if explicit and not allows(ctx.principal, (parsed.model, *self._pool_names(explicit))):
            raise PermissionDeniedError(f"This API key may not use the model '{parsed.model}'.",
                                        param="model", code="model_not_allowed")
        max_temp = float(tenant_option(ctx, "cache.max_temperature", self.config.cache.max_temperature))
        cache_cfg = self.config.cache.model_copy(update={"max_temperature": max_temp})
        bypass = should_bypass(effective_temperature(parsed), bool(getattr(parsed, "tools", None)), parsed.cache,
                               ctx.headers.get("cache-control"), cache_cfg)
        if bypass is None and ctx.gen.sampling.logprobs is not None:
            bypass = "logprobs"  # a stored text has no logprobs to replay
        use_cache = self.cache_enabled and bypass is None
        ctx.cache_status = "pending" if use_cache else "bypass"
        need_embedding = use_cache and self.config.cache.semantic_enabled
        if explicit and need_embedding and self.overlap and self.router is not None:
            # only the cache needs it: the cache stage's lookup (racing the pool) awaits it, the guard shares it
            ctx.embedding = asyncio.create_task(self._analyze(ctx, explicit, True))
            pool, decision = explicit, None
        else:
            pool, decision = await self._analyze(ctx, explicit, need_embedding)
        if not allows(ctx.principal, self._pool_names(pool)):
            pool = next((p.name for p in self.config.pools if allows(ctx.principal, self._pool_names(p.name))), "")
            if not pool:
                raise PermissionDeniedError("This API key may not use any model pool.", code="model_not_allowed")
        ctx.pool, ctx.decision = pool, decision
        if not explicit:
            ctx.route_reason = decision.reason if decision is not None else "router-unavailable"
            metrics.observe_route(pool, ctx.route_reason)
        ctx.candidates = self.candidates(pool, ctx.principal)
        ctx.response_headers.update(route_headers(decision, pool, self.config.pool(pool).engine.name))

    async def _analyze(self, ctx: RequestContext, pool: str, need_embedding: bool
                       ) -> tuple[str, RouteDecision | None]:
        cfg = self.config.router
        if not pool and not cfg.enabled:
            pool = cfg.default_pool
        if (pool and not need_embedding) or self.router is None:
            return pool or cfg.default_pool, None
        text, classify = ctx.gen.last_user_text(), not pool
        share = tenant_option(ctx, "router.large_share", None)  # the tenant's operating point, if any
        turns = sum(1 for m in ctx.gen.messages or () if m.get("role") == "user") or 1
        memo_key = (text, classify, share, turns)
        decision = self.decisions.get(memo_key)
        if decision is None:
            try:
                decision = await asyncio.wait_for(
                    self.router.analyze(text, classify, large_share=share, turns=turns), cfg.timeout_s)
            except Exception as exc:  # the router must never fail a request
                logger.warning("router unavailable (%s); using %s", type(exc).__name__, pool or cfg.default_pool)
                return pool or cfg.default_pool, None
            if memoizable(text, decision):
                self.decisions.put(memo_key, decision)
        return pool or decision.pool, decision if not pool else embedding_only(decision)
