"""What the ingress records when a request completes: metrics and the request-log record."""

from __future__ import annotations

import time

from app.errors import GatewayError
from app.generation import GenerationChunk, GenerationRequest
from app.observability import metrics
from app.observability.cost import cost_usd
from app.observability.request_log import RequestLogger, RequestLogRecord


def record_success(endpoint: str, route: str, model: str, stream: bool, tenant: str, start: float,
                   first_token_at: float | None, prompt_tokens: int, completion_tokens: int) -> None:
    """Count a 200 with its latency, TTFT/TPOT (streams), tokens and cost."""
    now = time.perf_counter()
    ttft = first_token_at - start if stream and first_token_at is not None else None
    metrics.observe_request(
        endpoint=endpoint, route=route, model=model, status=200, latency_s=now - start, stream=stream,
        tenant=tenant, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
        cost_usd=cost_usd(model, prompt_tokens, completion_tokens), ttft_s=ttft,
        tpot_s=metrics.tpot_seconds(first_token_at, now, completion_tokens) if ttft is not None else None,
    )


def build_log_record(req: GenerationRequest, trace_id: str, route: str, last: GenerationChunk | None, text: str,
                     headers: dict[str, str], stream: bool, start: float, first_token_at: float | None, *,
                     status: int = 200, error_type: str | None = None,
                     finished_at: float | None = None) -> RequestLogRecord:
    """Every field of the record, ``endpoint``, ``status`` and ``tpot_ms`` included; ``last`` None for a
    request that failed before any chunk (tokens 0). Times are ``time.perf_counter()`` values."""
    now = time.perf_counter() if finished_at is None else finished_at
    model = (last.model if last is not None else "") or headers.get("x-llmgw-model", "")
    prompt_tokens = last.prompt_tokens if last is not None else 0
    completion_tokens = last.completion_tokens if last is not None else 0
    ttft = first_token_at - start if stream and first_token_at is not None else None
    tpot = metrics.tpot_seconds(first_token_at, now, completion_tokens) if ttft is not None else None
    return RequestLogRecord(
        request_id=req.request_id, tenant=req.tenant, trace_id=trace_id,
        endpoint="chat" if req.is_chat else "completions", model=req.model, response_model=model,
        route=route, cache=headers.get("x-llmgw-cache", ""), path=headers.get("x-llmgw-path", ""),
        status=status, error_type=error_type, stream=stream, messages=req.messages, prompt=req.prompt,
        response=text, latency_ms=(now - start) * 1000,
        ttft_ms=ttft * 1000 if ttft is not None else None, tpot_ms=tpot * 1000 if tpot is not None else None,
        prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
        cost_usd=cost_usd(model, prompt_tokens, completion_tokens) if model else 0.0,
    )


def log_request(logger: RequestLogger, req: GenerationRequest, trace_id: str, route: str, last: GenerationChunk,
                text: str, headers: dict[str, str], stream: bool, start: float, first_token_at: float | None) -> None:
    """The prompt/response triplet for evaluation sets (PII redacted by the logger)."""
    if logger.cfg.enabled:
        logger.log(build_log_record(req, trace_id, route, last, text, headers, stream, start, first_token_at))


def log_failure(logger: RequestLogger, req: GenerationRequest, trace_id: str, route: str, error: GatewayError,
                headers: dict[str, str], stream: bool, start: float, first_token_at: float | None = None,
                last: GenerationChunk | None = None, text: str = "") -> None:
    """A failed request's record: its status and error type (a stream cut after some text keeps that text)."""
    if logger.cfg.enabled:
        logger.log(build_log_record(req, trace_id, route or "-", last, text, headers, stream, start,
                                    first_token_at, status=error.status_code, error_type=error.error_type))
