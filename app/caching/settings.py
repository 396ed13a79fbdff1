"""Cache configuration (part of GatewayConfig)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from app.resilience.settings import BreakerConfig


class CacheConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    redis_url: str | None = None  # None: in-memory only (the local default)
    key_prefix: str = "llmgw:cache"
    exact_enabled: bool = True
    semantic_enabled: bool = True
    similarity_threshold: float = Field(0.80, ge=0.0, le=1.0)  # candidate gate before verification
    verifier_enabled: bool = True
    # "ensemble": the shipped verifier-v3 ("mlp" is its old name); cross-encoder: built by
    # `llmgw cache train-verifier --cross-encoder`
    verifier: Literal["ensemble", "mlp", "cross-encoder"] = "ensemble"
    verifier_threshold: float | None = None  # None: the artifact's threshold
    # Operating point (app/caching/strictness.py): "strict" = similarity_threshold + verifier_threshold;
    # "balanced" = the two values below (chosen on calibration data, docs/cache.md). Per tenant: tenant record
    # option `cache.strictness`, passed as CacheQuery.strictness.
    strictness: Literal["strict", "balanced"] = "strict"
    balanced_similarity_threshold: float = Field(0.70, ge=0.0, le=1.0)
    balanced_verifier_threshold: float = Field(0.70, ge=0.0, le=1.0)
    slot_veto_strict: bool = False  # the one-slot veto (always on for "balanced") at the strict level too
    # With LLMGW_EMBED_BACKEND=onnx-int8-prefilter: the index (int8 vectors) is searched this far below the
    # level's gate; the cache replica then gates and verifies each candidate on fp32 vectors (docs/cache.md).
    prefilter_margin: float = Field(0.07, ge=0.0, le=0.3)  # `llmgw cache eval --prefilter` chose it
    ann_expansion_search: int | None = Field(None, ge=1)  # usearch search breadth; None: usearch's default (64)
    max_temperature: float = 1.0  # a cached answer is one valid sample up to here (omitted = 1.0); above: bypass
    ttl_seconds: int = 3600
    # exact answers an ingress replica stored or was served, kept in its own memory this long (0: off): the
    # likely repeat is answered without the cache hop; an invalidation reaches other replicas up to this late.
    # Never for tenants with protection "redact" (the cache replica decides what is storable for them).
    near_ttl_s: float = Field(10.0, ge=0)
    near_max_entries: int = Field(2048, ge=0)
    max_entries: int = 100_000
    max_bytes: int = 512 * 1024 * 1024
    # eviction is LRU (by max_entries / max_bytes); the stale-answer floor is fallback.stale_min_similarity
    # Entries at rest in Redis, per tenant ("*": every tenant not listed): none | encrypt (AES-256-GCM,
    # key = base64 of 32 bytes in $encryption_key_env) | redact (entries with PII are not cached).
    protection: dict[str, Literal["none", "encrypt", "redact"]] = Field(default_factory=dict)
    encryption_key_env: str = "LLMGW_CACHE_ENCRYPTION_KEY"
    redis_timeout_s: float = 0.2
    # The ingress' calls to the cache replica (app/caching/guard.py): a lookup (exact, semantic or stale) past
    # lookup_timeout_s is a miss, a store past store_timeout_s is dropped; after call_breaker.failure_threshold
    # failures within its window_s the ingress skips the cache (every request a miss) for its cooldown_s.
    lookup_timeout_s: float = Field(2.0, gt=0)
    store_timeout_s: float = Field(5.0, gt=0)
    call_breaker: BreakerConfig = Field(
        default_factory=lambda: BreakerConfig(failure_threshold=3, window_s=10.0, cooldown_s=2.0))
    redis_retry_s: float = 2.0  # after a Redis failure, try again after this long
    ray_actor_options: dict = Field(default_factory=lambda: {"num_cpus": 0.25})
