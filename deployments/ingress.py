"""HTTP ingress: the OpenAI-compatible API. Each route is one line into ``app.api``; the request path
is the pipeline ``app.pipeline.build.build_pipeline`` composes; this module only wires it to handles."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from ray import serve
from ray.serve.handle import DeploymentHandle

from app.api import async_jobs, batches, files
from app.api.batch_scope import BatchScope, batch_scope
from app.api.completions import complete, read_json_body, read_json_body_or_none
from app.api.embeddings_handler import embeddings
from app.api.model_list import list_models
from app.api.openapi import install_openapi
from app.api.policy_admin import dispatch as policy_dispatch
from app.api.prompts import PromptAdmin
from app.api.prompts import dispatch as prompts_dispatch
from app.api.responses_handler import responses
from app.batch.service import BatchService
from app.config import GatewayConfig
from app.errors import InvalidRequestError, NotFoundError
from app.http_errors import install_error_handlers
from app.observability import metrics
from app.observability.request_log import RequestLogger
from app.observability.tracing import setup_tracing
from app.pipeline.build import build_pipeline, default_services
from app.policy.auth import guard_metrics, readyz_view, require_admin
from app.policy.batch_ledger import PolicyBatchLedger
from app.prompts.shadow_worker import forward_to_worker
from app.resilience.breaker import STATE_VALUE, BreakerRegistry
from deployments.ingress_backends import CacheHandle, ProviderHandle, RouterHandle, in_process_router
from deployments.pool_dispatch import DispatchBoundedPools

api = FastAPI(title="llm-gateway", docs_url=None, redoc_url=None)
install_error_handlers(api)
install_openapi(api)  # /openapi.json with request bodies and error shapes (app/api/openapi.py)


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
        batch: DeploymentHandle | None = None,  # held only so the batch workers are part of the application
        shadow: DeploymentHandle | None = None,  # the ShadowWorker: shadow runs off this replica (docs/prompts.md)
    ) -> None:
        self.config = GatewayConfig.model_validate(config)
        self.pools = pools
        self.cache = cache
        self.fallback = fallback
        self.names = self.config.model_names()
        self.breakers = BreakerRegistry(self.config.fallback.breaker, on_change=metrics.breaker_changed)  # gauge
        setup_tracing(self.config.observability.tracing)
        self.router = router
        request_log = RequestLogger(self.config.observability.request_log)
        router_client = in_process_router(self.config) or RouterHandle(router)
        self.embed_batch = getattr(router_client, "embed_batch", router.embed_batch.remote)
        self.services = default_services(self.config, request_log, embed=router_client.embed_sync)
        self.policy = self.services.policy
        if shadow is not None and self.services.prompts is not None:
            forward_to_worker(self.services.prompts, shadow)  # else build_pipeline runs them here
        cache_client = CacheHandle(cache, channel=self.config.ingress.cache_channel) if cache is not None else None
        self.pipeline = build_pipeline(
            self.config, router=router_client, cache=cache_client,
            pools=DispatchBoundedPools(pools, relay=self.config.ingress.stream_relay,
                                       dispatch_timeout_s=self.config.fallback.pool_dispatch_timeout_s,
                                       leases=self.config.ingress.pool_leases,
                                       lease_ttl_s=self.config.ingress.pool_lease_ttl_s,
                                       unary_leases=self.config.ingress.unary_leases),
            providers=ProviderHandle(fallback) if fallback is not None else None,
            breakers=self.breakers, request_log=request_log, services=self.services,
        )
        self.max_body = self.config.ingress.max_body_bytes
        # None: no redis.url -> batch routes 404; batches reserve on the policy ledger the workers settle on
        self.batch_service = BatchService.from_config(self.config, ledger=PolicyBatchLedger(self.policy))

    def __del__(self) -> None:
        metrics.mark_process_dead()  # graceful replica shutdown: its live gauges leave /metrics

    # ---- endpoints -------------------------------------------------------------------------
    @api.post("/v1/chat/completions")
    async def chat_completions(self, request: Request) -> Response:
        return await complete(self.pipeline, request, "chat", self.max_body)

    @api.post("/v1/completions")
    async def completions(self, request: Request) -> Response:
        return await complete(self.pipeline, request, "completions", self.max_body)

    @api.post("/v1/embeddings")
    async def embeddings(self, request: Request) -> Response:
        return await embeddings(request, self.embed_batch, self.max_body,
                                self.pipeline.stage("authenticate"))

    @api.post("/v1/responses")
    async def responses(self, request: Request) -> Response:
        return await responses(self.pipeline, request, self.max_body)

    @api.get("/v1/models")
    async def models(self, request: Request) -> dict[str, Any]:
        return await list_models(self.policy, self.names, request.headers)

    # ---- policy: keys, tenants, usage (one dispatcher: app/api/policy_admin.py, docs/policy.md) ----
    @api.get("/v1/usage")
    async def own_usage(self, request: Request) -> dict[str, Any]:
        return await self._policy_call(request)

    @api.api_route("/admin/keys{rest:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
    async def keys_admin(self, request: Request, rest: str = "") -> dict[str, Any]:
        return await self._policy_call(request)

    @api.api_route("/admin/tenants{rest:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
    async def tenants_admin(self, request: Request, rest: str = "") -> dict[str, Any]:
        return await self._policy_call(request)

    @api.get("/admin/usage")
    async def usage_admin(self, request: Request) -> dict[str, Any]:
        return await self._policy_call(request)

    async def _policy_call(self, request: Request) -> dict[str, Any]:
        body = None
        if request.method in ("POST", "PUT", "PATCH"):
            body = await read_json_body_or_none(request, self.max_body)  # bounded: read before the admin check
        client = request.client.host if request.client is not None else None
        return await policy_dispatch(self.policy, self.config.auth, request.method, request.url.path,
                                     request.headers, request.query_params, body, client)

    @api.get("/metrics")
    async def prometheus(self, request: Request) -> Response:
        guard_metrics(request.headers, self.config.auth, self.config.policy.protect_metrics)
        metrics.set_breaker_states({n: STATE_VALUE[b.state] for n, b in self.breakers.breakers.items()})
        body, content_type = metrics.render_metrics()
        return Response(body, media_type=content_type)

    @api.get("/healthz")
    async def healthz(self) -> dict[str, str]:
        return {"status": "ok"}

    @api.get("/readyz")
    async def readyz(self, request: Request) -> JSONResponse:
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
        body = readyz_view(body, request.headers, self.config.auth, self.config.policy.protect_readyz_detail)
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
        body = await read_json_body(request, self.max_body)
        tenant, prefix = body.get("tenant"), body.get("prefix")
        if not isinstance(tenant, str) or not tenant or not (prefix is None or isinstance(prefix, str)):
            raise InvalidRequestError("Body must be {\"tenant\": str, \"prefix\": str | null}.", param="tenant")
        cache = self._cache_handle()
        await self._pending_stores()
        invalidated = await cache.invalidate.remote(tenant, prefix)
        self._clear_near()  # after: a hit served meanwhile cannot refill it with an invalidated answer
        return {"invalidated": invalidated}

    @api.post("/admin/cache/flush")
    async def cache_flush(self, request: Request) -> dict[str, Any]:
        self._require_admin(request)
        cache = self._cache_handle()
        await self._pending_stores()
        flushed = await cache.flush.remote()
        self._clear_near()
        return {"flushed": flushed}

    # ---- prompt registry and experiments: one dispatcher (app/api/prompts.py, docs/prompts.md) -------
    @api.api_route("/admin/prompts{rest:path}", methods=["GET", "POST", "PUT", "DELETE"])
    async def prompts_admin(self, request: Request, rest: str = "") -> dict[str, Any]:
        return await self._prompts_call(request)

    @api.api_route("/admin/experiments{rest:path}", methods=["GET", "POST", "PUT", "DELETE"])
    async def experiments_admin(self, request: Request, rest: str = "") -> dict[str, Any]:
        return await self._prompts_call(request)

    async def _prompts_call(self, request: Request) -> dict[str, Any]:
        self._require_admin(request)
        body = await read_json_body(request, self.max_body) if request.method in ("POST", "PUT") else None
        stage = self.pipeline.stage("render_prompt")
        admin = PromptAdmin(stage.registry, stage.experiments) if stage is not None else None
        return await prompts_dispatch(admin, request.method, request.url.path, request.query_params, body)

    # ---- batch lane: Files, Batches, async requests (app/api/*, docs/batch.md) ------------------
    async def _scope(self, request: Request) -> BatchScope:
        return await batch_scope(self.batch_service, self.pipeline, request.headers, request.url.path)

    @api.post("/v1/files")
    async def files_create(self, request: Request) -> Response:
        return await files.create_file(request, await self._scope(request))

    @api.get("/v1/files")
    async def files_list(self, request: Request) -> Response:
        return await files.list_files(request, await self._scope(request))

    @api.get("/v1/files/{file_id}")
    async def files_get(self, request: Request, file_id: str) -> Response:
        return await files.get_file(await self._scope(request), file_id)

    @api.delete("/v1/files/{file_id}")
    async def files_delete(self, request: Request, file_id: str) -> Response:
        return await files.delete_file(await self._scope(request), file_id)

    @api.get("/v1/files/{file_id}/content")
    async def files_content(self, request: Request, file_id: str) -> Response:
        return await files.file_content(await self._scope(request), file_id)

    @api.post("/v1/batches")
    async def batches_create(self, request: Request) -> Response:
        return await batches.create_batch(request, await self._scope(request))

    @api.get("/v1/batches")
    async def batches_list(self, request: Request) -> Response:
        return await batches.list_batches(request, await self._scope(request))

    @api.get("/v1/batches/{batch_id}")
    async def batches_get(self, request: Request, batch_id: str) -> Response:
        return await batches.get_batch(await self._scope(request), batch_id)

    @api.post("/v1/batches/{batch_id}/cancel")
    async def batches_cancel(self, request: Request, batch_id: str) -> Response:
        return await batches.cancel_batch(await self._scope(request), batch_id)

    @api.post("/v1/async/chat/completions")
    async def async_create(self, request: Request) -> Response:
        return await async_jobs.create_async(request, await self._scope(request), self.max_body)

    @api.get("/v1/async/{job_id}")
    async def async_get(self, request: Request, job_id: str) -> Response:
        return await async_jobs.get_async(await self._scope(request), job_id)

    def _require_admin(self, request: Request) -> None:
        require_admin(request.headers, self.config.auth)  # 403 when no admin key is configured

    def _cache_handle(self) -> DeploymentHandle:
        if self.cache is None:
            raise NotFoundError("The response cache is disabled in this deployment.")
        return self.cache

    async def _pending_stores(self) -> None:
        stage = self.pipeline.stage("cache")
        if stage is not None:
            await stage.wait_pending()

    def _clear_near(self) -> None:
        stage = self.pipeline.stage("cache")
        if stage is not None:
            stage.clear_near()
