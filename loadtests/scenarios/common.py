"""Shared locust behaviour: an OpenAI-API user, custom metrics (TTFT, TPOT, cache, path) and an HTTP-only summary.

Custom metrics are locust request events with their own ``request_type`` so they land in the CSVs:
``TTFT``/``TPOT`` (ms, per streamed request), ``CACHE`` (name = ``hit-exact|hit-semantic|miss``),
``PATH`` (name = ``x-llmgw-path``) and ``RATELIMIT`` (name = tenant). At test stop an HTTP-only
aggregate (custom rows excluded) is written to ``$LLMGW_LOCUST_SUMMARY`` if set.

Environment: ``LLMGW_MODEL`` (default ``auto``), ``LLMGW_MAX_TOKENS`` (default 32),
``LLMGW_IGNORE_EOS=1`` (vLLM's ``ignore_eos``: every answer ``max_tokens`` long, for fixed-length load),
``LLMGW_API_KEY`` (sent as Bearer if set), ``LLMGW_TENANT`` (sent as ``x-llmgw-tenant`` if set).
"""

from __future__ import annotations

import json
import os
import random
import time
from pathlib import Path

from locust import HttpUser, between, events
from locust.stats import StatsEntry

CUSTOM_TYPES = frozenset({"TTFT", "TPOT", "CACHE", "PATH", "RATELIMIT"})
QUESTIONS = [
    "What is the capital of France?",
    "Explain how a hash map works.",
    "Write a haiku about the sea.",
    "How do I reverse a list in Python?",
    "What causes the seasons on Earth?",
    "Summarise the plot of Hamlet in two sentences.",
    "What is the difference between TCP and UDP?",
    "Give me three tips for better sleep.",
    "Translate 'good morning' into Spanish.",
    "Why is the sky blue?",
    "Prove that the square root of two is irrational.",
    "Write a SQL query that counts orders per customer.",
]


def fire(env, request_type: str, name: str, value_ms: float = 0.0) -> None:
    """Record one custom metric sample as a locust request event."""
    env.events.request.fire(request_type=request_type, name=name, response_time=value_ms, response_length=0,
                            exception=None, context={})


def chat_body(prompt: str, stream: bool = False, max_tokens: int | None = None, model: str | None = None) -> dict:
    body = {"model": model or os.environ.get("LLMGW_MODEL", "auto"),
            "max_tokens": max_tokens or int(os.environ.get("LLMGW_MAX_TOKENS", "32")),
            "messages": [{"role": "user", "content": prompt}], "stream": stream}
    if os.environ.get("LLMGW_IGNORE_EOS", "").lower() in ("1", "true", "yes"):
        body["ignore_eos"] = True
    if stream:
        body["stream_options"] = {"include_usage": True}
    return body


class GatewayUser(HttpUser):
    """Base user: auth/tenant headers, non-streaming and streaming chat with the custom metrics."""

    abstract = True
    wait_time = between(0.05, 0.2)
    tenant: str | None = None

    def headers(self) -> dict[str, str]:
        out = {}
        if key := os.environ.get("LLMGW_API_KEY"):
            out["Authorization"] = f"Bearer {key}"
        if tenant := self.tenant or os.environ.get("LLMGW_TENANT"):
            out["x-llmgw-tenant"] = tenant
        return out

    def record_headers(self, resp) -> None:
        if cache := resp.headers.get("x-llmgw-cache"):
            fire(self.environment, "CACHE", cache)
        if path := resp.headers.get("x-llmgw-path"):
            fire(self.environment, "PATH", path)

    def chat(self, prompt: str, name: str = "chat", ok_statuses: tuple[int, ...] = (200,), **kw) -> int:
        """POST a non-streaming chat completion; returns the status code."""
        with self.client.post("/v1/chat/completions", json=chat_body(prompt, **kw), headers=self.headers(),
                              name=name, catch_response=True) as resp:
            self.record_headers(resp)
            if resp.status_code in ok_statuses:
                resp.success()
            else:
                resp.failure(f"HTTP {resp.status_code}")
            return resp.status_code

    def chat_stream(self, prompt: str, name: str = "chat-stream", **kw) -> None:
        """POST a streaming chat completion; fires TTFT and TPOT (ms) for complete streams."""
        t0 = time.perf_counter()
        first = last = None
        tokens = 0
        done = False
        with self.client.post("/v1/chat/completions", json=chat_body(prompt, stream=True, **kw),
                              headers=self.headers(), name=name, stream=True, catch_response=True) as resp:
            self.record_headers(resp)
            if resp.status_code != 200:
                resp.failure(f"HTTP {resp.status_code}")
                return
            for line in resp.iter_lines():
                if line.startswith(b"data: [DONE]"):
                    done = True
                elif line.startswith(b"data: {"):
                    chunk = json.loads(line[6:])
                    if chunk.get("choices") and (chunk["choices"][0].get("delta") or {}).get("content"):
                        last = time.perf_counter()
                        first = first or last
                    if chunk.get("usage"):
                        tokens = chunk["usage"].get("completion_tokens", 0)
            if not done:
                resp.failure("stream ended without [DONE]")
                return
            resp.success()
        if first is not None:
            fire(self.environment, "TTFT", name, (first - t0) * 1000)
            if tokens > 1:
                fire(self.environment, "TPOT", name, (last - first) * 1000 / (tokens - 1))


def random_question() -> str:
    return random.choice(QUESTIONS)


def http_aggregate(stats) -> dict:
    """Requests/s, percentiles and error rate over HTTP entries only (custom metric rows excluded)."""
    agg = StatsEntry(stats, "HTTP", "", use_response_times_cache=False)
    for entry in stats.entries.values():
        if entry.method not in CUSTOM_TYPES:
            agg.extend(entry)
    return {"requests": agg.num_requests, "failures": agg.num_failures, "rps": round(agg.total_rps, 2),
            "error_rate": round(agg.num_failures / agg.num_requests, 4) if agg.num_requests else 0.0,
            **{f"p{int(q * 100)}_ms": agg.get_response_time_percentile(q) for q in (0.5, 0.95, 0.99)},
            "avg_ms": round(agg.avg_response_time, 2)}


@events.test_stop.add_listener
def _write_summary(environment, **_kw) -> None:
    if out := os.environ.get("LLMGW_LOCUST_SUMMARY"):
        Path(out).write_text(json.dumps(http_aggregate(environment.runner.stats), indent=2))
