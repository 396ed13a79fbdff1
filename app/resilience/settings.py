"""Fallback configuration (part of GatewayConfig). Provider keys are named by env var, never inline."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

ChainStep = Literal["routed_pool", "other_pool", "providers", "stale_cache"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ProviderConfig(_Strict):
    name: str
    kind: Literal["openai", "anthropic"]
    base_url: str  # e.g. https://api.openai.com/v1 or https://api.anthropic.com
    model: str
    api_key_env: str  # the env var holding the key; read at call time, never logged
    timeout_s: float = 30.0
    max_tokens_default: int = 512


class BreakerConfig(_Strict):
    failure_threshold: int = 5  # failures within window_s that open the breaker
    window_s: float = 30.0
    cooldown_s: float = 15.0  # open -> half-open after this long


class RetryConfig(_Strict):
    attempts: int = 3
    base_delay_s: float = 0.2
    max_delay_s: float = 4.0
    deadline_s: float = 30.0  # overall budget per request across retries


class FallbackConfig(_Strict):
    chain: list[ChainStep] = Field(default_factory=lambda: ["routed_pool", "other_pool", "providers", "stale_cache"])
    providers: list[ProviderConfig] = Field(default_factory=list)
    breaker: BreakerConfig = Field(default_factory=BreakerConfig)
    retry: RetryConfig = Field(default_factory=RetryConfig)
    stale_min_similarity: float = 0.6
    # Streams: a pool with no live replica queues requests; after this long without a first token, fall back.
    pool_first_chunk_timeout_s: float = 60.0
    # Unary pool calls: no replica has taken the call after this long (none running, or all full) -> fall
    # back (deployments/pool_dispatch.py); None: wait up to ingress.request_timeout_s.
    pool_dispatch_timeout_s: float | None = Field(10.0, gt=0)
    unavailable_retry_after_s: int = 10
    ray_actor_options: dict = Field(default_factory=lambda: {"num_cpus": 0.25})
