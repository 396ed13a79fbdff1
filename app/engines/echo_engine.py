"""Instant echo engine: answers with the prompt's words. Benchmarks only (gateway overhead)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from app.config import PoolConfig
from app.generation import GenerationChunk, GenerationRequest
from app.observability import metrics


class EchoEngine:
    def __init__(self, pool: PoolConfig) -> None:
        self.model_name = pool.engine.name
        self.max_model_len = pool.engine.max_model_len
        self.counters = {"requests": 0, "aborted": 0, "failed": 0}

    async def stream(self, req: GenerationRequest) -> AsyncIterator[GenerationChunk]:
        self.counters["requests"] += 1
        words = req.last_user_text().split() or ["ok"]
        limit = req.sampling.max_tokens or len(words)
        want = limit if req.sampling.ignore_eos else max(len(words), req.sampling.min_tokens)
        words = (words * (want // len(words) + 1))[:min(want, limit)]  # the words again, as far as asked
        for i, word in enumerate(words):
            last = i == len(words) - 1
            finish = ("length" if len(words) == limit else "stop") if last else None
            yield GenerationChunk((" " if i else "") + word, finish, len(words), i + 1, self.model_name)

    async def check_health(self) -> None:
        return None

    def stats(self) -> dict[str, int]:
        return {**self.counters, "running": 0}

    def shutdown(self) -> None:
        metrics.mark_process_dead()  # the pool replica is going away: its live gauges leave /metrics
