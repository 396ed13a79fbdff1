"""Batch lane configuration (``GatewayConfig.batch``). Storage is the top-level ``redis.url`` unless
``batch.redis_url`` names another (e.g. a test DB)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class BatchConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = True  # the lane also needs a Redis URL (redis.url); without one its endpoints answer 404
    redis_url: str | None = None  # None: the top-level redis.url
    key_prefix: str = "llmgw:batch"
    # OpenAI's limits
    max_file_bytes: int = 200 * 1024 * 1024
    max_lines: int = 50_000
    chunk_bytes: int = 1 << 20  # files are stored in Redis as chunks of this size
    max_completion_window_s: int = 24 * 3600  # "24h" is OpenAI's only value; <N>s|m|h|d up to this (ledger hold: 26 h)
    retention_s: int = 30 * 24 * 3600  # files, batch records and results expire after this
    # Workers
    num_replicas: int = 1
    max_in_flight: int = 64  # per worker replica, across pools
    pool_share: float = Field(0.25, gt=0.0, le=1.0)  # of each pool's max_ongoing_requests
    busy_share: float = Field(0.25, ge=0.0, le=1.0)  # of that, while real-time requests are in flight
    idle_window_s: float = Field(1.0, ge=0.0)  # a pool quiet (no real-time) this long: batch may take its full cap
    preempt: bool = True  # real-time work on a pool preempts (cancels, re-queues) batch lines over the limit
    backoff_queue_depth: int = 0  # engine requests waiting beyond max_num_seqs before batch backs off
    stats_interval_s: float = 0.25  # how often the gate polls the pools' stats()
    claim_idle_ms: int = 30_000  # a pending entry idle this long belongs to a dead worker: reclaim it
    heartbeat_s: float = 5.0  # in-flight entries are re-claimed by their worker this often (resets idle)
    sweep_interval_s: float = 1.0  # cancel / expiry / finalize / trim checks
    max_attempts: int = 3  # executions of one line (retryable upstream failures, dead workers)
    retry_base_s: float = 0.5
    item_timeout_s: float = 300.0
    embed_concurrency: int = Field(2, ge=1)  # /v1/embeddings lines at a time per worker (the router's model)
    # Batch rate of its own (per tenant), not the key's real-time rpm/tpm; None: unlimited
    rpm: int | None = None
    tpm: int | None = None
    # Async single requests and webhooks
    webhook_secret_env: str = "LLMGW_WEBHOOK_SECRET"  # signing secret of webhooks (Standard Webhooks)
    ray_actor_options: dict[str, Any] = Field(default_factory=lambda: {"num_cpus": 0.25})
