"""Prompt registry, experiment and shadow settings (``GatewayConfig.prompts``)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ShadowConfig(_Strict):
    """Background runs of a candidate on a sampled share of traffic (see docs/prompts.md)."""

    max_concurrency: int = Field(4, ge=1)  # shadow runs in flight per replica (past the delay); others queue
    # shadows held per replica (in their delay, queued or running); beyond it a sample is skipped_busy
    max_pending: int = Field(256, ge=1)
    timeout_s: float = Field(60.0, gt=0)
    # a shadow starts this long after the served answer ended, so the answer's last bytes (SSE [DONE])
    # leave before the candidate's render and pool call take the event loop (docs/prompts.md, measured)
    start_delay_s: float = Field(0.25, ge=0.0, le=10.0)
    # then a shadow waits for a moment with no served request in flight on its replica (the lower-priority
    # path; docs/prompts.md, measured), at most this long, else it is skipped_busy; 0 = start at once
    yield_max_s: float = Field(2.0, ge=0.0, le=60.0)
    # where shadows run: "worker" = the ShadowWorker deployment (a process of its own at a lower CPU priority;
    # the ingress hands each batch of tickets over in one call; needs redis.url, the registry both share),
    # "ingress" = on the ingress replica's event loop, "auto" = worker when redis.url is set (docs/prompts.md)
    runner: Literal["auto", "worker", "ingress"] = "auto"
    worker_niceness: int = Field(10, ge=0, le=19)  # the worker's os.nice() increment: the served path comes first
    worker_replicas: int = Field(1, ge=1)
    # the worker's shadows ask the pools for this vLLM priority (lower is scheduled first; served requests 0): it
    # orders the waiting queue of a pool whose engine runs with ``extra_args: {scheduling_policy: priority}``
    engine_priority: int = Field(1, ge=0)


class PromptsConfig(_Strict):
    """Where prompts live and how fast replicas see a change."""

    enabled: bool = True
    key_prefix: str = "llmgw:prompts"  # Redis keys (the top-level ``redis.url``); in memory when no Redis
    refresh_s: float = Field(0.25, gt=0, le=1.0)  # a replica re-checks the change counter this often
    default_label: str = "production"  # used when a prompt_ref names neither a version nor a label
    shadow: ShadowConfig = Field(default_factory=ShadowConfig)
