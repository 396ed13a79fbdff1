"""HTTP ingress: the OpenAI-compatible API. Each route is one line into ``app.api``; the request path
is the pipeline ``app.pipeline.build.build_pipeline`` composes; this module only wires it to handles."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from ray import serve
from ray.serve.handle import DeploymentHandle

from app.api.completions import complete
from app.config import GatewayConfig
from app.errors import InvalidRequestError, NotFoundError, PermissionDeniedError
from app.http_body import parse_json_object
from app.http_errors import install_error_handlers
from app.observability import metrics
from app.observability.request_log import RequestLogger
from app.observability.tracing import setup_tracing
from app.pipeline.build import build_pipeline
from app.policy.auth import is_admin
from app.resilience.breaker import STATE_VALUE, BreakerRegistry
from deployments.ingress_backends import CacheHandle, PoolHandles, ProviderHandle, RouterHandle

api = FastAPI(title="llm-gateway", docs_url=None, redoc_url=None)
install_error_handlers(api)


@serve.deployment
@serve.ingress(api)
class Ingress:
    def __init__(
        self,
        config: dict[str, Any],
        pools: dict[str, DeploymentHandle],
        router: DeploymentHandle,
        cache: DeploymentHandle | None = None,
        fallback: DeploymentHandle | None = None,
        canary: DeploymentHandle | None = None,  # held only so the canary runner is part of the application
    ) -> None:
        self.config = GatewayConfig.model_validate(config)
        self.pools = pools
        self.cache = cache
        self.fallback = fallback
        self.names = self.config.model_names()
        self.breakers = BreakerRegistry(self.config.fallback.breaker)
        setup_tracing(self.config.observability.tracing)
        self.pipeline = build_pipeline(
            self.config, router=RouterHandle(router), cache=CacheHandle(cache) if cache is not None else None,
            pools=PoolHandles(pools), providers=ProviderHandle(fallback) if fallback is not None else None,
            breakers=self.breakers, request_log=RequestLogger(self.config.observability.request_log),
        )
        self.max_body = self.config.ingress.max_body_bytes

    # ---- endpoints -------------------------------------------------------------------------
    @api.post("/v1/chat/completions")
    async def chat_completions(self, request: Request) -> Response:
        return await complete(self.pipeline, request, "chat", self.max_body)

    @api.post("/v1/completions")
    async def completions(self, request: Request) -> Response:
        return await complete(self.pipeline, request, "completions", self.max_body)

    @api.get("/v1/models")
    async def models(self) -> dict[str, Any]:
        data = [{"id": name, "object": "model", "created": 0, "owned_by": "llm-gateway"} for name in self.names]
        return {"object": "list", "data": data}

    @api.get("/metrics")
    async def prometheus(self) -> Response:
        metrics.set_breaker_states({n: STATE_VALUE[b.state] for n, b in self.breakers.breakers.items()})
        body, content_type = metrics.render_metrics()
        return Response(body, media_type=content_type)

    @api.get("/healthz")
    async def healthz(self) -> dict[str, str]:
        return {"status": "ok"}

    @api.get("/readyz")
    async def readyz(self) -> JSONResponse:
        checks = await asyncio.gather(
            *(asyncio.wait_for(h.check_health.remote(), 5) for h in self.pools.values()), return_exceptions=True
        )
        states = ["unavailable" if isinstance(r, BaseException) else "ok" for r in checks]
        pools = dict(zip(self.pools, states, strict=True))
        ready = any(v == "ok" for v in pools.values())
        breakers = {f"pool:{name}": self.breakers.get(f"pool:{name}").state for name in self.pools}
        if self.fallback is not None:
            try:
                breakers.update(await asyncio.wait_for(self.fallback.breaker_states.remote(), 5))
            except Exception:
                breakers["providers"] = "unknown"
        ready = ready or (self.fallback is not None and any(v != "open" for k, v in breakers.items()
                                                           if k.startswith("provider:")))
        body = {"status": "ready" if ready else "unavailable", "pools": pools, "breakers": breakers,
                "breaker_state_values": {k: STATE_VALUE.get(v, -1) for k, v in breakers.items()}}
        return JSONResponse(body, status_code=200 if ready else 503)

    @api.get("/admin/cache/stats")
    async def cache_stats(self, request: Request) -> dict[str, Any]:
        self._require_admin(request)
        cache = self._cache_handle()
        await self._pending_stores()
        return await cache.stats.remote(request.query_params.get("tenant"))

    @api.post("/admin/cache/invalidate")
    async def cache_invalidate(self, request: Request) -> dict[str, Any]:
        self._require_admin(request)
        body = parse_json_object(await request.body(), self.config.ingress.max_body_bytes)
        tenant, prefix = body.get("tenant"), body.get("prefix")
        if not isinstance(tenant, str) or not tenant or not (prefix is None or isinstance(prefix, str)):
            raise InvalidRequestError("Body must be {\"tenant\": str, \"prefix\": str | null}.", param="tenant")
        cache = self._cache_handle()
        await self._pending_stores()
        return {"invalidated": await cache.invalidate.remote(tenant, prefix)}

    @api.post("/admin/cache/flush")
    async def cache_flush(self, request: Request) -> dict[str, Any]:
        self._require_admin(request)
        cache = self._cache_handle()
        await self._pending_stores()
        return {"flushed": await cache.flush.remote()}

    def _require_admin(self, request: Request) -> None:
        if not is_admin(request.headers, self.config.auth):
            raise PermissionDeniedError("Admin endpoints need the admin key (Authorization: Bearer <key>).")

    def _cache_handle(self) -> DeploymentHandle:
        if self.cache is None:
            raise NotFoundError("The response cache is disabled in this deployment.")
        return self.cache

    async def _pending_stores(self) -> None:
        stage = self.pipeline.stage("cache")
        if stage is not None:
            await stage.wait_pending()
