"""What the ingress records when a request completes: metrics and the request-log record."""

from __future__ import annotations

import time

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


def log_request(logger: RequestLogger, req: GenerationRequest, trace_id: str, route: str, last: GenerationChunk,
                text: str, headers: dict[str, str], stream: bool, start: float, first_token_at: float | None) -> None:
    """The prompt/response triplet for evaluation sets (PII redacted by the logger)."""
    if not logger.cfg.enabled:
        return
    model = last.model or headers.get("x-llmgw-model", "")
    logger.log(RequestLogRecord(
        request_id=req.request_id, tenant=req.tenant, trace_id=trace_id, model=req.model, response_model=model,
        route=route, cache=headers.get("x-llmgw-cache", ""), path=headers.get("x-llmgw-path", ""),
        stream=stream, messages=req.messages, prompt=req.prompt, response=text,
        latency_ms=(time.perf_counter() - start) * 1000,
        ttft_ms=(first_token_at - start) * 1000 if stream and first_token_at else None,
        prompt_tokens=last.prompt_tokens, completion_tokens=last.completion_tokens,
        cost_usd=cost_usd(model, last.prompt_tokens, last.completion_tokens),
    ))
