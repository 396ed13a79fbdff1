"""A closed-loop OpenAI-API load generator: N concurrent clients, tokens/s, latency and TTFT percentiles."""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from dataclasses import dataclass

import httpx
import numpy as np


@dataclass
class LoadResult:
    requests: int
    errors: int
    tokens: int
    seconds: float
    latencies: list[float]
    ttfts: list[float]

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0

    def pct(self, q: float, values: list[float] | None = None) -> float:
        values = self.latencies if values is None else values
        return float(np.percentile(values, q)) * 1000 if values else float("nan")

    def row(self) -> dict[str, float]:
        return {"tokens_per_s": round(self.tokens_per_s, 1), "p50_ms": round(self.pct(50), 1),
                "p99_ms": round(self.pct(99), 1), "ttft_p50_ms": round(self.pct(50, self.ttfts), 1),
                "errors": self.errors, "requests": self.requests}


_reported: set[int] = set()


def _first_error(status: int, text: str) -> None:
    """Print the first error body of each status once: a run of failures says why."""
    if status not in _reported:
        _reported.add(status)
        print(f"    HTTP {status}: {text[:300]}", flush=True)


async def _one(client: httpx.AsyncClient, url: str, model: str, max_tokens: int, stream: bool, i: int):
    # The same body for every target: vLLM's `ignore_eos` (bare vLLM, Serve LLM and the gateway all honour it)
    # makes every answer max_tokens long, so no arm is favoured by answers that ended early; tokens/s still
    # counts the tokens each answer reported.
    body = {"model": model, "max_tokens": max_tokens, "temperature": 1.0, "stream": stream, "cache": False,
            "ignore_eos": True,
            "messages": [{"role": "user", "content": f"Tell me a long story, number {i}."}]}
    if stream:
        body["stream_options"] = {"include_usage": True}
    t0 = time.perf_counter()
    ttft, tokens = None, 0
    if stream:
        async with client.stream("POST", f"{url}/v1/chat/completions", json=body) as resp:
            if resp.status_code != 200:
                _first_error(resp.status_code, (await resp.aread()).decode(errors="replace"))
                return None
            async for line in resp.aiter_lines():
                if not line.startswith("data: {"):
                    continue
                chunk = json.loads(line[6:])
                if ttft is None and chunk.get("choices") and chunk["choices"][0]["delta"].get("content"):
                    ttft = time.perf_counter() - t0
                if chunk.get("usage"):
                    tokens = chunk["usage"]["completion_tokens"]
    else:
        resp = await client.post(f"{url}/v1/chat/completions", json=body)
        if resp.status_code != 200:
            _first_error(resp.status_code, resp.text)
            return None
        tokens = resp.json()["usage"]["completion_tokens"]
    return time.perf_counter() - t0, tokens, ttft


async def run_load(url: str, model: str, concurrency: int, requests: int, max_tokens: int = 128,
                   stream: bool = True) -> LoadResult:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=600, limits=limits) as client:
        await _one(client, url, model, 8, stream, -1)  # warm up
        sem = asyncio.Semaphore(concurrency)

        async def worker(i: int):
            async with sem:
                return await _one(client, url, model, max_tokens, stream, i)

        t0 = time.perf_counter()
        results = await asyncio.gather(*(worker(i) for i in range(requests)))
        seconds = time.perf_counter() - t0
    ok = [r for r in results if r is not None]
    return LoadResult(len(results), len(results) - len(ok), sum(r[1] for r in ok), seconds,
                      [r[0] for r in ok], [r[2] for r in ok if r[2] is not None])


def median_ratio(a: list[float], b: list[float]) -> float:
    return statistics.median(a) / statistics.median(b)
