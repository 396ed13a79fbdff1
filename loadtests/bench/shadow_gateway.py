"""What shadow traffic adds to the client's latency, end to end through the real graph (tiny models).

    flock /tmp/llmgw-graph.lock nice -n 19 python -m loadtests.bench.shadow_gateway \
        [--requests 240] [--concurrency 4] [--max-tokens 16] [--shadow-model small]

Starts the gateway (tests/gateway_test_config.yaml, port 8014, registry in memory), creates two prompts of
two versions each, each in an A/B experiment (100 % control): ``exp-off`` without a shadow, ``exp-on`` with
a shadow of version 2 (``--sample-rate``, default every request; on the pool ``--shadow-model``). In one run:

1. interleaved: a closed loop of ``concurrency`` streaming clients, the two prompts alternating request
   by request, so the machine's noise and the engine load of the shadow runs hit both arms alike: the
   difference is what a shadow costs on the client's own path (the target: added p99 <= 5 ms);
2. sequential: the same load with no shadow anywhere, then with every request shadowed: this also
   shows the extra engine work the shadow runs bring onto the shared pool.

Prints p50 / p99 / TTFT per arm side by side, the added p99 with a 95 % bootstrap interval and the
shadow outcomes (``llmgw_shadow_runs``); writes .cache/bench/shadow_gateway.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import time
import uuid
from pathlib import Path

import httpx
import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[2]
PORT = 8014
CHAT = "/v1/chat/completions"
TEMPLATE = {"messages": [{"role": "system", "content": "You help {{ customer }} with {{ product }}."}],
            "variables": {"customer": {"type": "string"}, "product": {"type": "string"}}}


async def one(client: httpx.AsyncClient, tenant: str, prompt: str, i: int, max_tokens: int) -> tuple[float, float]:
    """One streaming request through the gateway: (total seconds until [DONE], TTFT seconds)."""
    body = {"model": "small", "max_tokens": max_tokens, "stream": True, "cache": False, "user": f"u{i}",
            "messages": [{"role": "user", "content": f"Question number {i}: where is my order?"}],
            "prompt_ref": {"name": prompt, "variables": {"customer": "Ann", "product": "Ray"}}}
    t0 = time.perf_counter()
    ttft = None
    async with client.stream("POST", CHAT, json=body, headers={"x-llmgw-tenant": tenant}) as resp:
        if resp.status_code != 200:
            raise RuntimeError(f"{resp.status_code}: {(await resp.aread())[:300]!r}")
        async for line in resp.aiter_lines():
            if ttft is None and line.startswith("data: {") and '"content"' in line:
                ttft = time.perf_counter() - t0
    total = time.perf_counter() - t0
    return total, ttft if ttft is not None else total


def summary(rows: list[tuple[float, float]]) -> dict[str, float]:
    total = np.array([r[0] for r in rows]) * 1000
    ttft = np.array([r[1] for r in rows]) * 1000
    return {"n": len(rows), "p50_ms": round(float(np.percentile(total, 50)), 1),
            "p99_ms": round(float(np.percentile(total, 99)), 1),
            "ttft_p50_ms": round(float(np.percentile(ttft, 50)), 1),
            "ttft_p99_ms": round(float(np.percentile(ttft, 99)), 1)}


async def interleaved(url: str, tenant: str, n: int, concurrency: int, max_tokens: int) -> dict[str, list]:
    """Closed loop, ``concurrency`` clients, the arms alternating request by request (``2 n`` in all), so
    the machine's noise and every shadow run's load hit both arms alike."""
    out: dict[str, list] = {"exp-off": [], "exp-on": []}
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(2 * n):
        queue.put_nowait(i)
    async with httpx.AsyncClient(base_url=url, timeout=300) as client:
        async def worker() -> None:
            while not queue.empty():
                i = queue.get_nowait()
                arm = ("exp-off", "exp-on")[i % 2]
                out[arm].append(await one(client, tenant, arm, i, max_tokens))

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return out


def p99_diff_ci(on: list, off: list, rounds: int = 2000, q: float = 99) -> tuple[float, float]:
    """95 % bootstrap interval of the q-th percentile of ``on`` minus that of ``off``, in ms."""
    rng = np.random.default_rng(0)
    a, b = np.array([r[0] for r in on]) * 1000, np.array([r[0] for r in off]) * 1000
    diffs = [np.percentile(rng.choice(a, a.size), q) - np.percentile(rng.choice(b, b.size), q)
             for _ in range(rounds)]
    lo, hi = np.percentile(diffs, [2.5, 97.5])
    return round(float(lo), 1), round(float(hi), 1)


async def closed_loop(url: str, tenant: str, prompt: str, n: int, concurrency: int, max_tokens: int) -> list:
    sem = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=300) as client:
        async def worker(i: int):
            async with sem:
                return await one(client, tenant, prompt, i, max_tokens)

        return list(await asyncio.gather(*(worker(i) for i in range(n))))


def shadow_runs(url: str) -> dict[str, float]:
    text = httpx.get(f"{url}/metrics", timeout=30, headers=_admin()).text
    out: dict[str, float] = {}
    for m in re.finditer(r'^llmgw_shadow_runs_total\{[^}]*outcome="([a-z_]+)"[^}]*\} ([0-9.e+]+)$', text, re.M):
        out[m.group(1)] = out.get(m.group(1), 0.0) + float(m.group(2))
    return out


def _admin() -> dict[str, str]:
    return {"Authorization": f"Bearer {os.environ['LLMGW_ADMIN_KEY']}"}


def setup(url: str, tenant: str, shadow_model: str | None, sample_rate: float) -> None:
    def call(method: str, path: str, body: dict) -> None:
        r = httpx.request(method, f"{url}{path}", json=body, headers=_admin(), timeout=60)
        if r.status_code != 200:
            raise SystemExit(f"{method} {path}: {r.status_code} {r.text[:300]}")

    shadow = {"version": 2, "sample_rate": sample_rate, "budget_usd": 1000.0}
    if shadow_model:
        shadow["model"] = shadow_model
    for name in ("exp-off", "exp-on"):
        call("POST", "/admin/prompts", {"tenant": tenant, "name": name, "template": TEMPLATE, "labels": ["production"]})
        call("POST", "/admin/prompts", {"tenant": tenant, "name": name, "template": TEMPLATE})
        spec = {"tenant": tenant, "name": f"{name}-x", "prompt": name, "key": "request",
                "variants": [{"name": "control", "weight": 100}]}
        if name == "exp-on":
            spec["shadow"] = shadow
        call("POST", "/admin/experiments", spec)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=240, help="per arm and phase")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--shadow-model", default=None, help="the candidate's pool (default: the served one)")
    parser.add_argument("--shadow-concurrency", type=int, default=None, help="prompts.shadow.max_concurrency")
    parser.add_argument("--start-delay", type=float, default=None, help="prompts.shadow.start_delay_s")
    parser.add_argument("--sample-rate", type=float, default=1.0, help="the shadow's sample_rate")
    args = parser.parse_args()

    from ray import serve

    from app.cli import ensure_tiny_models, start_gateway

    os.chdir(ROOT)
    os.environ.setdefault("LLMGW_ADMIN_KEY", "sk-llmgw-bench-admin-" + uuid.uuid4().hex)
    ensure_tiny_models()
    config = yaml.safe_load((ROOT / "tests/gateway_test_config.yaml").read_text())
    config["batch"] = {"enabled": False}
    config["observability"] = {"canary": {"enabled": False}}
    shadow_cfg = config.setdefault("prompts", {}).setdefault("shadow", {})
    if args.shadow_concurrency:
        shadow_cfg["max_concurrency"] = args.shadow_concurrency
    if args.start_delay is not None:
        shadow_cfg["start_delay_s"] = args.start_delay
    start_gateway(config, port=PORT)
    url = f"http://127.0.0.1:{PORT}"
    tenant = f"shadow-bench-{uuid.uuid4().hex[:6]}"
    try:
        setup(url, tenant, args.shadow_model, args.sample_rate)
        asyncio.run(closed_loop(url, tenant, "exp-off", 2 * args.concurrency, args.concurrency, args.max_tokens))
        before = shadow_runs(url)
        mixed = asyncio.run(interleaved(url, tenant, args.requests, args.concurrency, args.max_tokens))
        mid = shadow_runs(url)
        off = asyncio.run(closed_loop(url, tenant, "exp-off", args.requests, args.concurrency, args.max_tokens))
        time.sleep(2)  # the last shadows of the interleaved phase drain
        on = asyncio.run(closed_loop(url, tenant, "exp-on", args.requests, args.concurrency, args.max_tokens))
        after = shadow_runs(url)
    finally:
        serve.shutdown()
    rows = {"interleaved, no shadow": summary(mixed["exp-off"]), "interleaved, shadowed": summary(mixed["exp-on"]),
            "sequential, no shadow": summary(off), "sequential, shadowed": summary(on)}
    runs = {"interleaved": {k: mid.get(k, 0) - before.get(k, 0) for k in mid},
            "sequential": {k: after.get(k, 0) - mid.get(k, 0) for k in after}}
    result = {"rows": rows, "shadow_runs": runs, "args": vars(args),
              "added_p99_ms_interleaved": round(rows["interleaved, shadowed"]["p99_ms"]
                                                - rows["interleaved, no shadow"]["p99_ms"], 1),
              "added_p99_ms_sequential": round(rows["sequential, shadowed"]["p99_ms"]
                                               - rows["sequential, no shadow"]["p99_ms"], 1),
              "added_p99_ci95_interleaved": p99_diff_ci(mixed["exp-on"], mixed["exp-off"]),
              "added_p99_ci95_sequential": p99_diff_ci(on, off),
              "added_p50_ms_interleaved": round(rows["interleaved, shadowed"]["p50_ms"]
                                                - rows["interleaved, no shadow"]["p50_ms"], 1),
              "added_p50_ci95_interleaved": p99_diff_ci(mixed["exp-on"], mixed["exp-off"], q=50),
              "raw_ms": {"interleaved_off": [round(r[0] * 1000, 1) for r in mixed["exp-off"]],
                         "interleaved_on": [round(r[0] * 1000, 1) for r in mixed["exp-on"]],
                         "sequential_off": [round(r[0] * 1000, 1) for r in off],
                         "sequential_on": [round(r[0] * 1000, 1) for r in on]}}
    print(f"{'':26}{'n':>5}{'p50 ms':>9}{'p99 ms':>9}{'ttft p50':>10}{'ttft p99':>10}")
    for name, row in rows.items():
        print(f"{name:26}{row['n']:>5}{row['p50_ms']:>9}{row['p99_ms']:>9}{row['ttft_p50_ms']:>10}"
              f"{row['ttft_p99_ms']:>10}")
    print(f"added p99: interleaved {result['added_p99_ms_interleaved']:+} ms "
          f"(95 % CI {result['added_p99_ci95_interleaved']}), sequential {result['added_p99_ms_sequential']:+} ms "
          f"(95 % CI {result['added_p99_ci95_sequential']}) (target <= 5 ms)")
    print(f"added p50, interleaved: {result['added_p50_ms_interleaved']:+} ms "
          f"(95 % CI {result['added_p50_ci95_interleaved']})")
    print(f"shadow runs: {runs}")
    out = ROOT / ".cache/bench/shadow_gateway.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
