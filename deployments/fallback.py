"""Fallback deployment: external providers in configured order, each behind its own circuit breaker
and retries; streams GenerationChunk like a pool does."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from ray import serve

from app.generation import GenerationChunk, GenerationRequest
from app.observability import metrics
from app.observability.settings import TracingConfig
from app.observability.tracing import setup_tracing, start_span
from app.resilience.breaker import BreakerRegistry
from app.resilience.chain import Step, run_chain
from app.resilience.providers import make_provider
from app.resilience.settings import FallbackConfig


@serve.deployment
class FallbackDeployment:
    def __init__(self, config: dict[str, Any], tracing: dict[str, Any] | None = None) -> None:
        setup_tracing(TracingConfig.model_validate(tracing or {}))
        self.config = FallbackConfig.model_validate(config)
        self.providers = [make_provider(p) for p in self.config.providers]
        # every provider breaker is on the llmgw_breaker_state gauge from the start (issue 14 #7)
        self.breakers = BreakerRegistry(self.config.breaker, on_change=metrics.breaker_changed)
        for p in self.providers:
            self.breakers.get(f"provider:{p.cfg.name}")

    async def stream(self, req: GenerationRequest, carrier: dict[str, str] | None = None
                     ) -> AsyncIterator[GenerationChunk]:
        with start_span("fallback.providers", carrier=carrier) as span:
            steps = [Step(f"provider:{p.cfg.name}", lambda p=p: p.stream(req),
                          self.breakers.get(f"provider:{p.cfg.name}"), capabilities=p.capabilities)
                     for p in self.providers]
            result = await run_chain(steps, self.config.retry, self.config.unavailable_retry_after_s,
                                     needs=req.needs())
            span.set_attribute("llmgw.provider", result.path)
            yield result.first
            async for chunk in result.rest:
                yield chunk

    async def breaker_states(self) -> dict[str, str]:
        return self.breakers.states()

    def __del__(self) -> None:
        metrics.mark_process_dead()  # graceful replica shutdown: its breaker gauges leave /metrics

    async def check_health(self) -> None:
        """Serve's periodic health check; reading the states also moves a cooled-down breaker to half-open
        (and so the gauge) when no call has come since."""
        self.breakers.states()
