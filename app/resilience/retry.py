"""Retries with exponential backoff + jitter (tenacity) for retryable upstream errors, honouring
Retry-After, within an overall deadline. Non-retryable errors (4xx other than 429) are raised at once."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt, stop_before_delay

from app.errors import UpstreamError
from app.resilience.settings import RetryConfig

T = TypeVar("T")


def is_retryable(exc: BaseException) -> bool:
    if isinstance(exc, UpstreamError):
        return exc.retryable
    return isinstance(exc, (asyncio.TimeoutError, ConnectionError, OSError))


def backoff_delay(attempt: int, cfg: RetryConfig, retry_after: float | None, rng: random.Random) -> float:
    """Full-jitter exponential backoff; an upstream's Retry-After is a floor."""
    ceiling = min(cfg.max_delay_s, cfg.base_delay_s * (2 ** (attempt - 1)))
    delay = rng.uniform(ceiling / 2, ceiling)
    if retry_after is not None:
        delay = max(delay, retry_after)
    return delay


async def call_with_retries(
    fn: Callable[[], Awaitable[T]],
    cfg: RetryConfig,
    *,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    rng: random.Random | None = None,
    on_retry: Callable[[int, BaseException, float], None] | None = None,
) -> T:
    """Run ``fn`` until it succeeds, a non-retryable error occurs, attempts run out or the deadline passes."""
    rng = rng or random.Random()
    start = time.monotonic()

    def wait(state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        delay = backoff_delay(state.attempt_number, cfg, getattr(exc, "retry_after", None), rng)
        remaining = cfg.deadline_s - (time.monotonic() - start)
        return max(0.0, min(delay, remaining))

    def before_sleep(state: RetryCallState) -> None:  # only called when a retry really follows
        if on_retry is not None and state.outcome is not None:
            on_retry(state.attempt_number, state.outcome.exception(), state.next_action.sleep)

    retrying = AsyncRetrying(
        retry=retry_if_exception(is_retryable),
        stop=stop_after_attempt(cfg.attempts) | stop_before_delay(cfg.deadline_s),
        wait=wait,
        before_sleep=before_sleep,
        sleep=sleep,
        reraise=True,
    )

    async def attempt() -> T:  # tenacity treats a plain callable as sync: always hand it a coroutine function
        return await fn()

    return await retrying(attempt)
