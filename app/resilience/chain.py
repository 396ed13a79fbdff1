"""The fallback chain: try each step (pool, other pool, providers, stale cache) until one produces its
first chunk. Retryable failures are retried within a step (backoff, Retry-After, deadline); a step
whose breaker is open is skipped; bad requests (4xx from our own validation) stop the chain."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from app.errors import InvalidRequestError, ServiceUnavailableError, find_gateway_error, upstream_error
from app.generation import GenerationChunk, merge_chunks
from app.resilience.breaker import CircuitBreaker
from app.resilience.retry import call_with_retries
from app.resilience.settings import RetryConfig

logger = logging.getLogger(__name__)


@dataclass
class Step:
    name: str  # shown in x-llmgw-path, e.g. "pool:small", "providers", "stale_cache"
    open: Callable[[], AsyncIterator[GenerationChunk]]
    breaker: CircuitBreaker | None = None
    retry: bool = True
    degraded: bool = False
    first_chunk_timeout_s: float | None = None  # an upstream with no replica would otherwise queue forever
    # What the step can honour ("tools", "response_format", "logprobs", "logit_bias"); None = everything.
    # A step lacking one of the request's needs (GenerationRequest.needs()) is skipped, never degraded.
    capabilities: frozenset[str] | None = None
    # awaited before the step opens, outside its failure accounting (a step that must not run speculatively
    # waits for the request's checks here; their error is the request's, not the step's)
    before: Callable[[], Awaitable[None]] | None = None

    def supports(self, needs: frozenset[str]) -> bool:
        return self.capabilities is None or needs <= self.capabilities


@dataclass
class ChainResult:
    path: str
    first: GenerationChunk
    rest: AsyncIterator[GenerationChunk]
    attempts: list[tuple[str, str]]  # (step, outcome) for every step tried before the answer
    degraded: bool = False

    async def collect(self) -> GenerationChunk:
        """The whole answer as one chunk (non-streaming responses)."""
        chunks = [self.first]
        async for chunk in self.rest:
            chunks.append(chunk)
        whole = merge_chunks(chunks)
        return dataclasses.replace(whole, model=whole.model or self.first.model)

    def cancel(self) -> None:
        cancel = getattr(self.rest, "cancel", None)
        if cancel is not None:
            cancel()


async def _first_chunk(open_stream: Callable[[], AsyncIterator[GenerationChunk]], timeout: float | None = None):
    stream = open_stream()
    try:
        first = await asyncio.wait_for(anext(stream), timeout)
    except StopAsyncIteration:
        first = GenerationChunk("", "stop")
    except BaseException as exc:
        cancel = getattr(stream, "cancel", None)
        if cancel is not None:
            cancel()
        if isinstance(exc, asyncio.TimeoutError):
            raise upstream_error("no first token in time", retryable=True, code="upstream_timeout") from None
        raise
    return first, stream


async def run_chain(steps: list[Step], retry: RetryConfig, retry_after_s: int = 10,
                    needs: frozenset[str] = frozenset()) -> ChainResult:
    attempts: list[tuple[str, str]] = []
    for step in steps:
        if not step.supports(needs):
            attempts.append((step.name, "unsupported:" + "+".join(sorted(needs - (step.capabilities or set())))))
            continue
        if step.before is not None:  # before the breaker: a half-open probe slot is taken only to be used
            await step.before()
        if step.breaker is not None and not step.breaker.allow():
            attempts.append((step.name, "breaker_open"))
            continue

        def on_retry(n: int, exc: BaseException, delay: float, s: Step = step) -> None:
            attempts.append((s.name, f"retry:{type(exc).__name__}"))
            if s.breaker is not None:
                s.breaker.record_failure()

        try:
            if step.retry:
                first, rest = await call_with_retries(
                    lambda s=step: _first_chunk(s.open, s.first_chunk_timeout_s), retry, on_retry=on_retry
                )
            else:
                first, rest = await _first_chunk(step.open, step.first_chunk_timeout_s)
        except asyncio.CancelledError:  # the client went away: neither a success nor a failure
            if step.breaker is not None:
                step.breaker.abandon()
            raise
        except Exception as exc:
            err = find_gateway_error(exc)
            if isinstance(err, InvalidRequestError):
                raise err from None  # the request itself is bad: no other path will do better
            if step.breaker is not None:
                step.breaker.record_failure()
            attempts.append((step.name, f"failed:{type(err or exc).__name__}"))
            logger.warning("fallback step %s failed: %s", step.name, type(err or exc).__name__)
            continue
        if step.breaker is not None:
            step.breaker.record_success()
        return ChainResult(step.name, first, rest, attempts, step.degraded)
    tried = ", ".join(f"{name} ({outcome})" for name, outcome in attempts) or "none configured"
    raise ServiceUnavailableError(
        "No model is available to answer right now: every path failed or is cooling down "
        f"[{tried}]. Please retry in {retry_after_s} seconds.",
        headers={"Retry-After": str(retry_after_s), "x-llmgw-path": "unavailable"},
    )
