"""Prometheus metrics of the gateway, aggregated across every replica process on a node.

prometheus_client's multiprocess mode: each process writes its samples to mmap files in
``PROMETHEUS_MULTIPROC_DIR`` (set for every replica through the Serve runtime_env, before
``prometheus_client`` is imported) and :func:`render_metrics` merges them, so any ingress replica's
``/metrics`` shows the whole node. Without that env var the process's own registry is rendered.
See docs/observability.md for why this rather than Ray's metric export.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

# 1 ms .. 60 s, dense where LLM latencies live (tens of ms per token, 0.1-10 s per request).
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 0.75,
                   1.0, 1.5, 2.5, 5.0, 7.5, 10.0, 15.0, 30.0, 60.0)
TPOT_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0,
                60.0)

# Our own registry (not prometheus_client's global one): no clash with other modules' metrics in one process.
REGISTRY = CollectorRegistry(auto_describe=True)
for _collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
    REGISTRY.register(_collector)
_R = {"registry": REGISTRY}

REQUESTS = Counter("llmgw_requests", "Finished requests.", ["endpoint", "route", "model", "status"], **_R)
ERRORS = Counter("llmgw_request_errors", "Failed requests by error type and upstream provider.",
                 ["endpoint", "route", "model", "status", "error_type", "provider"], **_R)
LATENCY = Histogram("llmgw_request_latency_seconds", "End-to-end request latency.",
                    ["endpoint", "route", "model", "stream"], buckets=LATENCY_BUCKETS, **_R)
TTFT = Histogram("llmgw_ttft_seconds", "Time to first token.", ["route", "model"], buckets=LATENCY_BUCKETS, **_R)
TPOT = Histogram("llmgw_tpot_seconds", "Time per output token after the first.", ["route", "model"],
                 buckets=TPOT_BUCKETS, **_R)
PROMPT_TOKENS = Counter("llmgw_prompt_tokens", "Input tokens.", ["route", "model", "tenant"], **_R)
COMPLETION_TOKENS = Counter("llmgw_completion_tokens", "Output tokens.", ["route", "model", "tenant"], **_R)
COST = Counter("llmgw_cost_usd", "Cost in USD (see app/observability/cost.py).", ["route", "model", "tenant"], **_R)
CACHE = Counter("llmgw_cache_lookups", "Cache outcomes by layer (exact, semantic; none for miss/bypass).",
                ["layer", "outcome"], **_R)
CACHE_GUARD = Counter("llmgw_cache_guard", "Ingress calls to the cache that timed out, failed or were skipped "
                      "(its breaker open): each a miss or a dropped store.", ["call", "outcome"], **_R)
ROUTER = Counter("llmgw_router_decisions", "Router decisions: chosen pool and why.", ["route", "reason"], **_R)
FALLBACK = Counter("llmgw_fallback_path", "Where answers came from: pool:<name>, provider:<name>, stale_cache, "
                   "unavailable; fallback=true when not the routed pool.", ["path", "fallback"], **_R)
BREAKER = Gauge("llmgw_breaker_state", "Circuit breaker state (0 closed, 1 half-open, 2 open); worst replica.",
                ["target"], multiprocess_mode="livemax", **_R)
RATE_LIMITED = Counter("llmgw_rate_limit_rejections", "Requests rejected by rate limits.", ["tenant", "limit"], **_R)
POLICY_STORE_DOWN = Counter("llmgw_policy_store_unavailable", "Policy checks that found Redis unreachable, by "
                            "limit and the fail mode applied (open: admitted, closed: 503).", ["limit", "mode"], **_R)
BUDGET_ALERTS = Counter("llmgw_budget_alerts", "Budget thresholds crossed (once per period each).",
                        ["tenant", "owner", "period", "threshold"], **_R)
COST_SAVED = Counter("llmgw_cost_saved_usd", "What cache hits would have cost (USD).", ["model", "tenant"], **_R)
GUARDRAIL = Counter("llmgw_guardrail_rejections", "Requests/responses blocked by guardrails.",
                    ["guardrail", "stage"], **_R)
GUARDRAIL_TRIGGERS = Counter("llmgw_guardrail_triggers", "Guardrail decisions (block, flag, redact, allow, log).",
                             ["stage", "rule", "action"], **_R)  # every decision; GUARDRAIL above counts blocks only
POOL_ONGOING = Gauge("llmgw_pool_ongoing_requests", "Requests in flight per pool (sum of replicas).", ["pool"],
                     multiprocess_mode="livesum", **_R)
POOL_LEASES = Counter("llmgw_pool_leases", "Pool leases (Serve calls booked ahead) by outcome: taken, missed (none "
                      "ready), expired unused, failed to book, stale (taken but gone: the plain call ran instead).",
                      ["pool", "outcome"], **_R)
POOL_QUEUE = Gauge("llmgw_pool_queue_depth", "Requests waiting in the engine queue per pool.", ["pool"],
                   multiprocess_mode="livesum", **_R)
CANARY_RUNS = Counter("llmgw_canary_runs", "Canary runs by result (ok, deviation, error).", ["canary", "result"], **_R)
CANARY_DEVIATION = Gauge("llmgw_canary_deviation", "1 if the canary's last run deviated from its expectation.",
                         ["canary"], multiprocess_mode="mostrecent", **_R)
CANARY_LATENCY = Histogram("llmgw_canary_latency_seconds", "Canary request latency.", ["canary"],
                           buckets=LATENCY_BUCKETS, **_R)
STRUCTURED = Counter("llmgw_structured_output", "Structured-output checks of final answers: valid, invalid "
                     "(a violation), truncated (finish length), reask (re-asked once), failed (502 after the re-ask).",
                     ["outcome"], **_R)
REQUEST_LOG_DROPPED = Counter("llmgw_request_log_dropped", "Request log records dropped (queue full or sink error).",
                              ["sink"], **_R)
# Prompt registry, experiments, evaluation (docs/prompts.md). "prompt" is the prompt name, "version" its number.
PROMPT_REQUESTS = Counter("llmgw_prompt_requests", "Requests rendered from a registry prompt, by version, "
                          "experiment variant and status.", ["prompt", "version", "variant", "status"], **_R)
EVAL_SCORE = Histogram("llmgw_eval_score", "LLM-judge scores (0..1) of answers by prompt version, route, variant and "
                       "source (online, shadow, served).", ["prompt", "version", "route", "variant", "source"],
                       buckets=(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0), **_R)
EVAL_RUNS = Counter("llmgw_eval_runs", "Judge runs by source and outcome (scored, failed, skipped_busy).",
                    ["source", "outcome"], **_R)
SHADOW_RUNS = Counter("llmgw_shadow_runs", "Shadow runs by experiment and outcome (ok, error, timeout, "
                      "skipped_busy, skipped_budget).", ["experiment", "outcome"], **_R)
SHADOW_COST = Counter("llmgw_shadow_cost_usd", "Cost of shadow runs (their own budget, not the tenant's).",
                      ["experiment"], **_R)
BATCH_QUEUE_DEPTH = Gauge("llmgw_batch_queue_depth", "Batch lane entries not yet acknowledged, per lane.",
                          ["lane"], multiprocess_mode="livemax", **_R)
BATCH_OLDEST_AGE = Gauge("llmgw_batch_oldest_item_age_seconds", "Age of the oldest unacknowledged entry per lane.",
                         ["lane"], multiprocess_mode="livemax", **_R)
BATCH_ITEMS = Counter("llmgw_batch_items", "Batch lane items finished, by lane and outcome (rate() = items/s).",
                      ["lane", "outcome"], **_R)
BATCH_IN_FLIGHT = Gauge("llmgw_batch_in_flight", "Batch lane requests in flight per pool.", ["pool"],
                        multiprocess_mode="livesum", **_R)
BATCH_LIMIT = Gauge("llmgw_batch_pool_limit", "Batch lane concurrency the capacity gate allows per pool now.",
                    ["pool"], multiprocess_mode="livesum", **_R)


def observe_request(*, endpoint: str, route: str, model: str, status: int, latency_s: float, stream: bool,
                    tenant: str, prompt_tokens: int = 0, completion_tokens: int = 0, cost_usd: float = 0.0,
                    ttft_s: float | None = None, tpot_s: float | None = None, error_type: str | None = None,
                    provider: str = "") -> None:
    """Record one finished request: count, error, latency, TTFT/TPOT, tokens and cost."""
    REQUESTS.labels(endpoint, route, model, str(status)).inc()
    if status >= 400 or error_type:
        ERRORS.labels(endpoint, route, model, str(status), error_type or "unknown", provider).inc()
    LATENCY.labels(endpoint, route, model, "true" if stream else "false").observe(latency_s)
    if ttft_s is not None:
        TTFT.labels(route, model).observe(ttft_s)
    if tpot_s is not None:
        TPOT.labels(route, model).observe(tpot_s)
    if prompt_tokens:
        PROMPT_TOKENS.labels(route, model, tenant).inc(prompt_tokens)
    if completion_tokens:
        COMPLETION_TOKENS.labels(route, model, tenant).inc(completion_tokens)
    if cost_usd:
        COST.labels(route, model, tenant).inc(cost_usd)


def observe_cache(outcome: str, layer: str | None = None) -> None:
    """``outcome`` hit|miss|bypass|stale; ``layer`` exact|semantic for hits."""
    CACHE.labels(layer or "none", outcome).inc()


def observe_route(route: str, reason: str) -> None:
    ROUTER.labels(route, reason).inc()


def observe_path(path: str, fallback: bool) -> None:
    FALLBACK.labels(path, "true" if fallback else "false").inc()


def set_breaker_states(states: dict[str, int]) -> None:
    """``{target: 0|1|2}`` (see ``app.resilience.breaker.STATE_VALUE``)."""
    for target, value in states.items():
        BREAKER.labels(target).set(value)


BREAKER_VALUE = {"closed": 0, "half_open": 1, "open": 2}  # = app.resilience.breaker.STATE_VALUE


def breaker_changed(target: str, state: str) -> None:
    """``BreakerRegistry(on_change=...)``: this process's breaker ``target`` is now ``state``."""
    BREAKER.labels(target).set(BREAKER_VALUE.get(state, 2))


def tpot_seconds(first_token_at: float, finished_at: float, completion_tokens: int) -> float | None:
    """Mean time per output token after the first; None when fewer than two tokens."""
    if completion_tokens < 2:
        return None
    return max(finished_at - first_token_at, 0.0) / (completion_tokens - 1)


def multiprocess_dir() -> str | None:
    return os.environ.get(MULTIPROC_ENV) or os.environ.get(MULTIPROC_ENV.lower())


def reap_dead_processes(path: str) -> list[int]:
    """Drop the live gauges of processes of this node that died without their shutdown hook (a killed or
    crashed replica): else its last in-flight / queue values stay in every ``livesum`` forever. Returns the pids."""
    dead = set()
    for f in Path(path).glob("gauge_live*_*.db"):
        tail = f.stem.rsplit("_", 1)[1]
        pid = int(tail) if tail.isdigit() else os.getpid()
        if pid == os.getpid():
            continue
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            dead.add(pid)
        except PermissionError:  # alive, another user's
            pass
    for pid in dead:
        multiprocess.mark_process_dead(pid, path)
    return sorted(dead)


class LiveMultiProcessCollector(multiprocess.MultiProcessCollector):
    """The node's merged metrics, minus the live gauges of processes that are gone (``reap_dead_processes``)."""

    def collect(self) -> Iterable[Any]:
        reap_dead_processes(self._path)
        return super().collect()


def render_metrics() -> tuple[bytes, str]:
    """The Prometheus text exposition of every process on this node (or just this one)."""
    path = multiprocess_dir()
    if path:
        registry = CollectorRegistry()
        LiveMultiProcessCollector(registry, path=path)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST  # single process: this process's own metrics


def prepare_multiprocess_dir(path: str | Path) -> Path:
    """Create an empty metrics dir: call once per node before starting replicas (stale files skew sums)."""
    p = Path(path)
    if p.exists():
        shutil.rmtree(p)
    p.mkdir(parents=True)
    return p


def mark_process_dead(pid: int | None = None) -> None:
    """Drop a finished process's live gauges (call from a replica's shutdown hook)."""
    path = multiprocess_dir()
    if path:
        multiprocess.mark_process_dead(pid or os.getpid(), path)
