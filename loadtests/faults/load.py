"""The steady open-loop load of a fault run, and what counts as answered, lost, degraded and recovered."""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import Counter
from dataclasses import dataclass, field

import httpx

REPEATED = [f"What is the capital of country number {i}?" for i in range(16)]


@dataclass
class Outcome:
    t: float  # seconds since the load started
    status: int | None  # None: no HTTP answer
    code: str  # error code / type, "" when fine
    path: str  # x-llmgw-path
    complete: bool  # a 200 unary body, a stream ending in [DONE], or any error answer
    latency_s: float


@dataclass
class Load:
    """Open-loop steady load: one request every 1/rate s, never more than ``cap`` in flight."""

    url: str
    rate: float
    cap: int
    outcomes: list[Outcome] = field(default_factory=list)
    skipped: int = 0  # ticks where the cap was reached (the load generator's own back-pressure)
    t0: float = field(default_factory=time.monotonic)

    async def run(self, stop: asyncio.Event) -> None:
        limits = httpx.Limits(max_connections=self.cap + 8, max_keepalive_connections=self.cap)
        async with httpx.AsyncClient(base_url=self.url, timeout=90, limits=limits) as client:
            tasks: set[asyncio.Task] = set()
            i = 0
            while not stop.is_set():
                if len(tasks) < self.cap:
                    task = asyncio.create_task(self.one(client, i))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                else:
                    self.skipped += 1
                i += 1
                await asyncio.sleep(1 / self.rate)
            if tasks:
                await asyncio.wait(tasks, timeout=120)

    async def one(self, client: httpx.AsyncClient, i: int) -> None:
        stream = i % 2 == 0
        repeated = i % 4 < 2
        prompt = random.choice(REPEATED) if repeated else f"Tell me something new, request {i} at {time.time()}"
        body = {"model": "small", "messages": [{"role": "user", "content": prompt}], "max_tokens": 16,
                "temperature": 0, "stream": stream, "cache": repeated}
        start = time.monotonic()
        status, code, path, complete = None, "", "", False
        try:
            async with client.stream("POST", "/v1/chat/completions", json=body) as resp:
                status, path = resp.status_code, resp.headers.get("x-llmgw-path", "")
                raw = (await resp.aread()).decode(errors="replace")
            complete, code = _judge(status, raw, stream)
        except httpx.HTTPError as exc:
            code = type(exc).__name__
        self.outcomes.append(Outcome(start - self.t0, status, code, path, complete, time.monotonic() - start))

    def now(self) -> float:
        return time.monotonic() - self.t0


def _judge(status: int, raw: str, stream: bool) -> tuple[bool, str]:
    """(answered completely, error code): JSON errors and SSE error events are answers, cut streams are not."""
    if status != 200:
        try:
            err = json.loads(raw)["error"]
            return True, str(err.get("code") or err.get("type") or status)
        except (ValueError, KeyError, TypeError):
            return False, f"{status}:not-openai-json"
    if not stream:
        return True, ""
    for line in raw.splitlines():
        if line.startswith("data: {") and '"error"' in line:
            try:
                err = json.loads(line[6:])["error"]
                return True, f"stream:{err.get('code') or err.get('type')}"
            except (ValueError, KeyError, TypeError):
                pass
    return raw.rstrip().endswith("data: [DONE]"), "" if raw.rstrip().endswith("data: [DONE]") else "cut-stream"


def _normal(path: str) -> bool:
    """An answer from a pool or a verified cache hit: not a degraded one (providers, stale cache)."""
    return path.startswith("pool:") or path in ("cache", "")


def summarize(outcomes: list[Outcome], start: float, end: float, fault_at: float) -> dict:
    mine = [o for o in outcomes if start <= o.t < end]
    bad = [o for o in mine if not (o.status == 200 and o.complete and _normal(o.path))]
    late = [o.t + o.latency_s for o in bad if o.t >= fault_at]
    return {
        "sent": len(mine),
        "answered": sum(o.status is not None and o.complete for o in mine),
        "ok_normal": sum(o.status == 200 and o.complete and _normal(o.path) for o in mine),
        "errors_by_code": dict(Counter(f"{o.status}:{o.code}" for o in mine if o.code)),
        "lost": sum(o.status is None or not o.complete for o in mine),
        "paths": dict(Counter(o.path or "-" for o in mine)),
        "recover_s": round(max(late) - fault_at, 1) if late else 0.0,
        "p99_latency_s": round(sorted(o.latency_s for o in mine)[int(0.99 * (len(mine) - 1))], 2) if mine else None,
    }


GAUGE_STATES = {0: "closed", 1: "half_open", 2: "open"}


def breaker_gauge(metrics_text: str) -> dict[str, str]:
    """``llmgw_breaker_state{target=...}`` of a /metrics page as {target: state} (the worst replica's)."""
    out = {}
    for line in metrics_text.splitlines():
        if line.startswith("llmgw_breaker_state{") and 'target="' in line:
            target = line.split('target="', 1)[1].split('"', 1)[0]
            out[target] = GAUGE_STATES.get(int(float(line.rsplit(" ", 1)[1])), "unknown")
    return out


class Breakers:
    """Polls the breaker gauge on /metrics (every pool and provider breaker, issue 14 #7; /readyz waits up to 5 s
    on each pool's health check, the poller's own timeout, while a pool is down); remembers each change."""

    def __init__(self, url: str, load: Load) -> None:
        self.url, self.load = url, load
        self.states: dict[str, str] = {}
        self.transitions: list[tuple[float, str, str, str]] = []

    async def run(self, stop: asyncio.Event) -> None:
        async with httpx.AsyncClient(base_url=self.url, timeout=5) as client:
            while not stop.is_set():
                try:
                    breakers = breaker_gauge((await client.get("/metrics")).text)
                except httpx.HTTPError:
                    breakers = {}
                for name, state in breakers.items():
                    if self.states.get(name, "closed") != state:
                        self.transitions.append((round(self.load.now(), 1), name, self.states.get(name, "closed"),
                                                 state))
                    self.states[name] = state
                await asyncio.sleep(0.5)

    def between(self, start: float, end: float) -> list[str]:
        return [f"{t:.1f}s {n}: {a}->{b}" for t, n, a, b in self.transitions if start <= t < end]
