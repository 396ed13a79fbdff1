"""HTTP ingress: OpenAI-compatible API. Parses and validates, resolves the tenant, asks the router,
calls the chosen pool and streams SSE back. Policy lives in ``app``; this module only wires it."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import ValidationError
from ray import serve
from ray.serve.handle import DeploymentHandle
from starlette.background import BackgroundTask

from app.caching.bypass import should_bypass
from app.caching.entries import CachedResponse, CacheHit
from app.caching.keys import CacheQuery, context_key
from app.config import GatewayConfig
from app.errors import (
    InvalidRequestError,
    ModelNotFoundError,
    NotFoundError,
    PermissionDeniedError,
    UpstreamError,
)
from app.generation import GenerationChunk, GenerationRequest, SamplingOptions
from app.http_body import check_content_length, parse_json_object
from app.http_errors import install_error_handlers
from app.memo import LRUMemo
from app.observability import metrics
from app.observability.request_log import RequestLogger
from app.observability.request_outcome import log_request, record_success
from app.observability.tracing import (
    SpanKind,
    inject_context,
    set_attributes,
    setup_tracing,
    start_span,
    trace_headers,
    trace_id_hex,
)
from app.pending_writes import PendingWrites, call_on_loop
from app.policy.auth import is_admin, resolve_tenant
from app.resilience.breaker import STATE_VALUE, BreakerRegistry
from app.resilience.chain import Step, run_chain
from app.route_decision import RouteDecision, embedding_only, memoizable, route_headers
from app.schemas import (
    ChatCompletionRequest,
    CompletionRequest,
    chat_response,
    completion_response,
    validation_error,
)
from app.sse import cancel_on_exit, replay, split_text, sse_stream

logger = logging.getLogger("ray.serve")
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
        self.router = router
        self.cache = cache
        self.fallback = fallback
        self.names = self.config.model_names()
        self.breakers = BreakerRegistry(self.config.fallback.breaker)
        setup_tracing(self.config.observability.tracing)
        self.request_log = RequestLogger(self.config.observability.request_log)
        self._attempt = itertools.count()
        self._pending = PendingWrites()  # cache stores sent after the answer (read-your-writes per key)
        # (text, classify) -> the router's verdict: a repeated prompt (e.g. every cache hit) skips the router hop.
        self._decisions: LRUMemo[RouteDecision] = LRUMemo(2048)

    # ---- endpoints -------------------------------------------------------------------------
    @api.post("/v1/chat/completions")
    async def chat_completions(self, request: Request) -> Response:
        return await self._complete(request, chat=True)

    @api.post("/v1/completions")
    async def completions(self, request: Request) -> Response:
        return await self._complete(request, chat=False)

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
        await self._pending.wait()
        return await cache.stats.remote(request.query_params.get("tenant"))

    @api.post("/admin/cache/invalidate")
    async def cache_invalidate(self, request: Request) -> dict[str, Any]:
        self._require_admin(request)
        body = parse_json_object(await request.body(), self.config.ingress.max_body_bytes)
        tenant, prefix = body.get("tenant"), body.get("prefix")
        if not isinstance(tenant, str) or not tenant or not (prefix is None or isinstance(prefix, str)):
            raise InvalidRequestError("Body must be {\"tenant\": str, \"prefix\": str | null}.", param="tenant")
        cache = self._cache_handle()
        await self._pending.wait()
        return {"invalidated": await cache.invalidate.remote(tenant, prefix)}

    @api.post("/admin/cache/flush")
    async def cache_flush(self, request: Request) -> dict[str, Any]:
        self._require_admin(request)
        cache = self._cache_handle()
        await self._pending.wait()
        return {"flushed": await cache.flush.remote()}

    def _require_admin(self, request: Request) -> None:
        if not is_admin(request.headers, self.config.auth):
            raise PermissionDeniedError("Admin endpoints need the admin key (Authorization: Bearer <key>).")

    def _cache_handle(self) -> DeploymentHandle:
        if self.cache is None:
            raise NotFoundError("The response cache is disabled in this deployment.")
        return self.cache

    # ---- request path ----------------------------------------------------------------------
    async def _complete(self, request: Request, chat: bool) -> Response:
        """One trace per request: an incoming ``traceparent`` is honoured, the trace id is returned."""
        attributes = {"http.route": request.url.path}
        with start_span("ingress", carrier=request.headers, kind=SpanKind.SERVER, attributes=attributes) as span:
            response = await self._serve(request, chat)
            response.headers.update(trace_headers(span))
            return response

    async def _serve(self, request: Request, chat: bool) -> Response:
        start = time.perf_counter()
        limit = self.config.ingress.max_body_bytes
        with start_span("policy"):
            check_content_length(request.headers.get("content-length"), limit)
            body = parse_json_object(await request.body(), limit)
            try:
                parsed = (ChatCompletionRequest if chat else CompletionRequest).model_validate(body)
            except ValidationError as exc:
                raise validation_error(exc) from None
            tenant = resolve_tenant(request.headers, self.config.auth)
            req = self._generation_request(parsed, chat, tenant)
            bypass = should_bypass(parsed.temperature, bool(getattr(parsed, "tools", None)), parsed.cache,
                                   request.headers.get("cache-control"), self.config.cache)
        set_attributes(tenant=tenant, model=parsed.model)
        use_cache = self.cache is not None and bypass is None
        pool, decision = await self._analyze(req, need_embedding=use_cache and self.config.cache.semantic_enabled)
        if not self.names[req.model]:  # model "auto": a routing decision was made
            metrics.observe_route(pool, decision.reason if decision is not None else "router-unavailable")
        model = self.config.pool(pool).engine.name
        headers = route_headers(decision, pool, model)
        query = None
        if use_cache:
            query = self._cache_query(req, decision)
            hit = await self._cache_lookup(query)
            metrics.observe_cache("hit" if hit is not None else "miss", hit.layer if hit is not None else None)
            if hit is not None:
                headers["x-llmgw-cache"] = f"hit-{hit.layer}"
                record_success(request.url.path, pool, hit.response.model, parsed.stream, tenant, start, None,
                             hit.response.prompt_tokens, hit.response.completion_tokens)
                return self._from_cache(hit, req, chat, parsed.stream, parsed.include_usage, headers)
        headers["x-llmgw-cache"] = "miss" if use_cache else "bypass"
        with start_span("generate", attributes={"route": pool}):
            result = await self._run_chain(pool, req, parsed.stream, query)
        first_token_at = time.perf_counter()
        set_attributes(route=pool, path=result.path, cache=headers["x-llmgw-cache"])
        trace_id = trace_id_hex()
        headers["x-llmgw-path"] = result.path
        metrics.observe_path(result.path, fallback=result.path != f"pool:{pool}")
        if result.degraded:
            headers["x-llmgw-cache"] = "stale"
            headers["x-llmgw-degraded"] = "stale-cache"
        store = self._store_callback(query) if query is not None and not result.degraded else None

        def on_done(last: GenerationChunk, text: str) -> Callable[[], None] | None:
            record_success(request.url.path, pool, last.model or model, parsed.stream, tenant, start, first_token_at,
                         last.prompt_tokens, last.completion_tokens)
            log_request(self.request_log, req, trace_id, pool, last, text, headers, parsed.stream, start,
                        first_token_at)
            return store(last, text) if store is not None else None

        if parsed.stream:
            def on_stream_done(last: GenerationChunk, text: str) -> None:  # after [DONE] was yielded
                start_store = on_done(last, text)
                if start_store is not None:
                    start_store()

            body = sse_stream(rid=req.request_id, model=result.first.model, chat=chat, first=result.first,
                              rest=result.rest, include_usage=parsed.include_usage, on_done=on_stream_done)
            return StreamingResponse(cancel_on_exit(body, result), media_type="text/event-stream", headers=headers)
        final = await result.collect()
        start_store = on_done(final, final.text)
        build = chat_response if chat else completion_response
        payload = build(req.request_id, final.model or model, final.text, final.finish_reason,
                        final.prompt_tokens, final.completion_tokens)
        # The store runs after the answer is sent; it is registered already, so a following lookup
        # under the same context waits for it (read-your-writes without a cache hop on the answer path).
        background = BackgroundTask(call_on_loop, start_store) if start_store is not None else None
        return JSONResponse(payload, headers=headers, background=background)

    def _generation_request(self, parsed: ChatCompletionRequest | CompletionRequest, chat: bool, tenant: str):
        if parsed.model not in self.names:
            valid = ", ".join(sorted(self.names))
            raise ModelNotFoundError(f"The model '{parsed.model}' does not exist. Valid models: {valid}.",
                                     param="model")
        sampling = SamplingOptions(
            max_tokens=parsed.effective_max_tokens() or self.config.ingress.default_max_tokens,
            temperature=1.0 if parsed.temperature is None else parsed.temperature,
            top_p=1.0 if parsed.top_p is None else parsed.top_p,
            stop=parsed.stop_list(),
            seed=parsed.seed,
            presence_penalty=parsed.presence_penalty,
            frequency_penalty=parsed.frequency_penalty,
        )
        rid = f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex}"
        if chat:
            messages = [{"role": m.role, "content": m.text()} for m in parsed.messages]
            return GenerationRequest(rid, parsed.model, messages=messages, sampling=sampling, tenant=tenant)
        return GenerationRequest(rid, parsed.model, prompt=parsed.prompt_text(), sampling=sampling, tenant=tenant)

    async def _analyze(self, req: GenerationRequest, need_embedding: bool) -> tuple[str, RouteDecision | None]:
        """The pool to use and (when routing or the semantic cache needs it) the prompt's embedding."""
        pool = self.names[req.model]
        if not pool and not self.config.router.enabled:
            pool = self.config.router.default_pool
        if pool and not need_embedding:
            return pool, None
        cfg = self.config.router
        text, classify = req.last_user_text(), not pool
        decision = self._decisions.get((text, classify))
        if decision is None:
            try:
                call = self.router.analyze.remote(text, classify=classify, carrier=inject_context())
                decision = await asyncio.wait_for(call, cfg.timeout_s)
            except Exception as exc:  # the router must never fail a request
                logger.warning("router unavailable (%s); using %s", type(exc).__name__, pool or cfg.default_pool)
                return pool or cfg.default_pool, None
            if memoizable(text, decision):
                self._decisions.put((text, classify), decision)
        return pool or decision.pool, decision if not pool else embedding_only(decision)

    def _cache_query(self, req: GenerationRequest, decision: RouteDecision | None) -> CacheQuery:
        return CacheQuery(
            tenant=req.tenant,
            model=req.model,
            system_prompt=req.system_prompt(),
            messages=req.messages or [],
            prompt=req.prompt,
            sampling=req.sampling.as_dict(),
            embedding=None if decision is None else decision.embedding,
        )

    async def _cache_lookup(self, query: CacheQuery) -> CacheHit | None:
        try:
            await self._pending.wait(context_key(query))  # this replica's own stores in flight land first
            return await asyncio.wait_for(self.cache.lookup.remote(query, inject_context()), 2.0)
        except Exception as exc:  # a cache failure is a miss, never an error
            logger.warning("cache lookup failed: %s", type(exc).__name__)
            return None

    def _store_callback(self, query: CacheQuery):
        def store(last: GenerationChunk, text: str) -> Callable[[], None] | None:
            """Register the store (lookups under the same context wait for it); returns its starter."""
            if not text or last.finish_reason not in ("stop", "length"):
                return None
            response = CachedResponse(text, last.finish_reason, last.prompt_tokens, last.completion_tokens,
                                      last.model, time.time())
            return self._pending.schedule(context_key(query), lambda: self._store(query, response))

        return store

    async def _store(self, query: CacheQuery, response: CachedResponse) -> None:
        try:
            await self.cache.store.remote(query, response)
        except Exception as exc:
            logger.warning("cache store failed: %s", type(exc).__name__)

    def _from_cache(self, hit: CacheHit, req: GenerationRequest, chat: bool, stream: bool, include_usage: bool,
                    headers: dict[str, str]) -> Response:
        r = hit.response
        headers["x-llmgw-model"] = r.model
        if not stream:
            build = chat_response if chat else completion_response
            payload = build(req.request_id, r.model, r.text, r.finish_reason, r.prompt_tokens, r.completion_tokens)
            return JSONResponse(payload, headers=headers)
        pieces = split_text(r.text)
        final = GenerationChunk("", r.finish_reason, r.prompt_tokens, r.completion_tokens, r.model)
        first = GenerationChunk(pieces[0], None, r.prompt_tokens, 0, r.model)
        body = sse_stream(rid=req.request_id, model=r.model, chat=chat, first=first,
                          rest=replay(first, pieces[1:], final), include_usage=include_usage)
        return StreamingResponse(body, media_type="text/event-stream", headers=headers)

    def _fresh(self, req: GenerationRequest) -> GenerationRequest:
        """A copy with a new engine request id per attempt (a retried id may still be known upstream)."""
        return dataclasses.replace(req, request_id=f"{req.request_id}-{next(self._attempt)}")

    def _pool_step(self, pool: str, req: GenerationRequest, stream: bool) -> Step:
        handle = self.pools[pool]
        timeout = self.config.ingress.request_timeout_s

        async def unary() -> AsyncIterator[GenerationChunk]:
            yield await asyncio.wait_for(handle.generate.remote(self._fresh(req), inject_context()), timeout)

        def open_stream():
            if stream:
                return handle.options(stream=True).stream.remote(self._fresh(req), inject_context())
            return unary()

        first_token_timeout = self.config.fallback.pool_first_chunk_timeout_s if stream else None
        return Step(f"pool:{pool}", open_stream, self.breakers.get(f"pool:{pool}"),
                    first_chunk_timeout_s=first_token_timeout)

    def _steps(self, pool: str, req: GenerationRequest, stream: bool, query: CacheQuery | None) -> list[Step]:
        steps: list[Step] = []
        for kind in self.config.fallback.chain:
            if kind == "routed_pool":
                steps.append(self._pool_step(pool, req, stream))
            elif kind == "other_pool":
                steps += [self._pool_step(other, req, stream) for other in self.pools if other != pool]
            elif kind == "providers" and self.fallback is not None:
                steps.append(Step("providers", lambda: self.fallback.options(stream=True).stream.remote(
                    req, inject_context()), retry=False))
            elif kind == "stale_cache" and query is not None and self.cache is not None:
                steps.append(Step("stale_cache", lambda: self._stale(query), retry=False, degraded=True))
        return steps

    async def _stale(self, query: CacheQuery) -> AsyncIterator[GenerationChunk]:
        await self._pending.wait(context_key(query))
        hit = await self.cache.stale_lookup.remote(query, self.config.fallback.stale_min_similarity)
        if hit is None:
            raise UpstreamError("no cached answer close enough", code="no_stale_answer")
        r = hit.response
        yield GenerationChunk(r.text, r.finish_reason, r.prompt_tokens, r.completion_tokens, r.model)

    async def _run_chain(self, pool: str, req: GenerationRequest, stream: bool, query: CacheQuery | None):
        cfg = self.config.fallback
        return await run_chain(self._steps(pool, req, stream, query), cfg.retry, cfg.unavailable_retry_after_s)
