"""Open-loop fixed-RPS load generator for OpenAI-compatible endpoints (aiohttp).

Request *i* is sent at ``t0 + i / rps`` whether or not earlier ones finished, and its latency is
counted from that scheduled time, so a server that falls behind shows it (no coordinated omission).

    python -m loadtests.bench.load --url http://127.0.0.1:8201 --rps 200 --duration 10
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field

import aiohttp
import numpy as np

_WORD_TEXT = ("alpha bravo cobalt delta ember falcon granite harbor iris juniper kelp lumen mesa nickel onyx prism "
              "quartz raven sierra tundra umber violet willow xenon yarrow zephyr anchor basil cedar dune fjord "
              "glacier heron indigo jasper kestrel lagoon marble nebula orchid pepper quill river saffron thistle")
WORDS = _WORD_TEXT.split()


def unique_prompt(rng: random.Random) -> str:
    """A prompt no cache has seen: random words plus a random id."""
    return f"{' '.join(rng.choices(WORDS, k=8))} {uuid.uuid4().hex}"


@dataclass
class LoadResult:
    """Outcome of one fixed-RPS run; latencies in seconds."""

    target_rps: float
    duration_s: float
    sent: int = 0
    errors: int = 0
    latencies: list[float] = field(default_factory=list)
    ttfts: list[float] = field(default_factory=list)
    statuses: Counter = field(default_factory=Counter)
    cache: Counter = field(default_factory=Counter)
    late_s: float = 0.0  # how far the sender itself fell behind schedule at worst

    def pct(self, q: float, values: list[float] | None = None) -> float:
        values = self.latencies if values is None else values
        return float(np.percentile(values, q)) * 1000 if values else float("nan")

    @property
    def achieved_rps(self) -> float:
        return len(self.latencies) / self.duration_s if self.duration_s else 0.0

    def summary(self) -> dict:
        """Figures in milliseconds, rounded, for tables and JSON."""
        out = {"target_rps": self.target_rps, "achieved_rps": round(self.achieved_rps, 1), "sent": self.sent,
               "errors": self.errors, "error_rate": round(self.errors / self.sent, 4) if self.sent else 0.0,
               "p50_ms": round(self.pct(50), 2), "p95_ms": round(self.pct(95), 2), "p99_ms": round(self.pct(99), 2),
               "sender_late_ms": round(self.late_s * 1000, 1), "statuses": dict(self.statuses)}
        if self.ttfts:
            out["ttft_p50_ms"] = round(self.pct(50, self.ttfts), 2)
            out["ttft_p99_ms"] = round(self.pct(99, self.ttfts), 2)
        if self.cache:
            out["cache"] = dict(self.cache)
        return out


def build_body(prompt: str, model: str, max_tokens: int, stream: bool, extra: dict | None = None) -> dict:
    body = {"model": model, "max_tokens": max_tokens, "stream": stream,
            "messages": [{"role": "user", "content": prompt}], **(extra or {})}
    if stream:
        body["stream_options"] = {"include_usage": True}
    return body


async def _one(session: aiohttp.ClientSession, url: str, body: dict, headers: dict, res: LoadResult,
               scheduled: float, timeout: float) -> None:
    try:
        async with session.post(url, json=body, headers=headers, timeout=aiohttp.ClientTimeout(total=timeout)) as r:
            res.statuses[r.status] += 1
            if "x-llmgw-cache" in r.headers:
                res.cache[r.headers["x-llmgw-cache"]] += 1
            if body["stream"]:
                first, done = None, False
                async for line in r.content:
                    if first is None and line.startswith(b"data: {"):
                        chunk = json.loads(line[6:])
                        if chunk.get("choices") and (chunk["choices"][0].get("delta") or {}).get("content"):
                            first = time.perf_counter() - scheduled
                    done = done or line.startswith(b"data: [DONE]")
                ok = r.status == 200 and done
                if ok and first is not None:
                    res.ttfts.append(first)
            else:
                await r.read()
                ok = r.status == 200
    except (TimeoutError, aiohttp.ClientError) as exc:
        res.statuses[type(exc).__name__] += 1
        ok = False
    if ok:
        res.latencies.append(time.perf_counter() - scheduled)
    else:
        res.errors += 1


async def run_fixed_rps(base_url: str, rps: float, duration: float, *, model: str = "echo", max_tokens: int = 16,
                        stream: bool = False, headers: dict | None = None, path: str = "/v1/chat/completions",
                        prompts: list[str] | None = None, warmup: int = 20, timeout: float = 30,
                        seed: int = 0, extra_body: dict | None = None) -> LoadResult:
    """Send ``rps`` requests per second for ``duration`` seconds; unique prompts unless ``prompts`` given.

    ``extra_body`` is merged into every request body (e.g. ``{"cache": False}``).
    """
    rng = random.Random(seed)
    url = base_url.rstrip("/") + path
    headers = headers or {}
    n = max(1, int(rps * duration))
    conn = aiohttp.TCPConnector(limit=0, force_close=False)
    async with aiohttp.ClientSession(connector=conn) as session:
        warm = LoadResult(rps, duration)
        for _ in range(warmup):
            await _one(session, url, build_body(unique_prompt(rng), model, max_tokens, stream, extra_body), headers,
                       warm, time.perf_counter(), timeout)
        res = LoadResult(rps, duration)
        tasks = []
        t0 = time.perf_counter()
        for i in range(n):
            scheduled = t0 + i / rps
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                res.late_s = max(res.late_s, -delay)
            prompt = prompts[i % len(prompts)] if prompts else unique_prompt(rng)
            body = build_body(prompt, model, max_tokens, stream, extra_body)
            tasks.append(asyncio.create_task(_one(session, url, body, headers, res, scheduled, timeout)))
            res.sent += 1
        await asyncio.gather(*tasks)
        res.duration_s = n / rps  # achieved rps is judged against the schedule window
    return res


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:8201")
    parser.add_argument("--rps", type=float, default=100)
    parser.add_argument("--duration", type=float, default=10)
    parser.add_argument("--model", default="echo")
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--stream", action="store_true")
    parser.add_argument("--header", action="append", default=[], help="extra header 'Name: value'")
    args = parser.parse_args()
    headers = dict(h.split(": ", 1) for h in args.header)
    res = asyncio.run(run_fixed_rps(args.url, args.rps, args.duration, model=args.model, max_tokens=args.max_tokens,
                                    stream=args.stream, headers=headers))
    print(json.dumps(res.summary(), indent=2))


if __name__ == "__main__":
    main()
