"""Finisher ``log``: every request — answered, failed or aborted — is counted with its route and latency
and written to the request log (the prompt/response/evaluation triplet; PII redacted by the logger)."""

from __future__ import annotations

import time
from typing import Any

from app.observability import metrics
from app.observability.request_log import RequestLogger, RequestLogRecord
from app.pipeline.context import RequestContext


def record(ctx: RequestContext, now: float) -> RequestLogRecord:
    last, gen = ctx.final, ctx.gen
    ttft = ctx.first_token_at - ctx.started if ctx.stream and ctx.first_token_at is not None else None
    completion = last.completion_tokens if last is not None else 0
    tpot = metrics.tpot_seconds(ctx.first_token_at, now, completion) if ttft is not None else None
    error = ctx.error
    return RequestLogRecord(
        request_id=gen.request_id if gen is not None else ctx.request_id, tenant=ctx.tenant, trace_id=ctx.trace_id,
        endpoint=ctx.endpoint, model=ctx.model,
        response_model=(last.model if last is not None else "") or ctx.response_headers.get("x-llmgw-model", ""),
        route=ctx.pool or "-", cache=ctx.cache_status, path=ctx.response_headers.get("x-llmgw-path", ""),
        status=499 if ctx.aborted and error is None else ctx.status,
        error_type=error.error_type if error is not None else ("client_disconnected" if ctx.aborted else None),
        stream=ctx.stream, messages=gen.messages if gen is not None else None,
        prompt=gen.prompt if gen is not None else None, response=ctx.text,
        evaluation=dict(ctx.extras.get("evaluation", {})),
        latency_ms=(now - ctx.started) * 1000, ttft_ms=ttft * 1000 if ttft is not None else None,
        tpot_ms=tpot * 1000 if tpot is not None else None,
        prompt_tokens=last.prompt_tokens if last is not None else 0, completion_tokens=completion,
        cost_usd=ctx.cost_usd or 0.0, price_version=ctx.price_version,
    )


class Log:
    name = "log"

    def __init__(self, request_log: RequestLogger, online: Any = None) -> None:
        self.request_log = request_log
        self.online = online  # app.evaluation.online.OnlineEvaluator: scores a sample, then logs it itself

    async def __call__(self, ctx: RequestContext) -> None:
        now = time.perf_counter()
        last, error = ctx.final, ctx.error
        ttft = ctx.first_token_at - ctx.started if ctx.stream and ctx.first_token_at is not None else None
        completion = last.completion_tokens if last is not None else 0
        model = (last.model if last is not None else "") or ctx.response_headers.get("x-llmgw-model", "-")
        metrics.observe_request(
            endpoint=ctx.path, route=ctx.pool or "-", model=model, status=ctx.status, latency_s=now - ctx.started,
            stream=ctx.stream, tenant=ctx.tenant, prompt_tokens=last.prompt_tokens if last is not None else 0,
            completion_tokens=completion, cost_usd=ctx.cost_usd or 0.0, ttft_s=ttft if error is None else None,
            tpot_s=metrics.tpot_seconds(ctx.first_token_at, now, completion) if ttft is not None else None,
            error_type=error.error_type if error is not None else None,
            provider=ctx.response_headers.get("x-llmgw-path", "") if error is not None else "",
        )
        if self.request_log.cfg.enabled and ctx.body is not None:
            rec = record(ctx, now)
            if self.online is None or not self.online.submit(rec):
                self.request_log.log(rec)
