"""Batch lane priority and throughput on the real graph (tiny models): does a running batch hurt real-time chat?

    nice -n 19 flock /tmp/llmgw-graph.lock python -m loadtests.bench.batch_priority \
        [--rt-concurrency 4] [--rt-requests 200] [--batch-lines 3000] [--items 300] [--max-tokens 32]

Starts the gateway (tests/gateway_test_config.yaml: batch lane on Redis DB 9, port 8013) with the capacity
gate's settings of the shipped cpu profile (cluster/profiles.yaml; ``--profile none``: BatchConfig's
defaults; ``--busy-share`` etc. override), then, side by side:

1. real-time chat (streaming, closed loop) on an idle gateway: p50 / p99 latency, TTFT;
2. the same load while a large batch runs on the same pools: p50 / p99, and the batch's items/s meanwhile
   (target: real-time p99 within 1.2x of idle);
3. batch throughput: ``--items`` lines as one batch on an idle gateway (items/s, wall clock from the
   upload to the batch's completion) vs the same items sent as real-time requests at the batch lane's
   own concurrency cap.

Prints a table; writes .cache/bench/batch_priority.json. Needs app/graph.py to bind the BatchWorkers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from pathlib import Path

import httpx
import yaml

from loadtests.bench.openai_load import LoadResult

ROOT = Path(__file__).resolve().parents[2]
PORT = 8013
CHAT = "/v1/chat/completions"
GATE_FIELDS = ("pool_share", "busy_share", "idle_window_s", "backoff_queue_depth", "stats_interval_s")


def batch_file(n: int, tag: str, max_tokens: int) -> bytes:
    rows = [{"custom_id": f"{tag}-{i}", "method": "POST", "url": CHAT,
             "body": {"model": "small", "max_tokens": max_tokens, "cache": False,
                      "messages": [{"role": "user", "content": f"Batch {tag} item {i}: summarise."}]}}
            for i in range(n)]
    return b"".join(json.dumps(r).encode() + b"\n" for r in rows)


def submit(client, data: bytes) -> str:
    f = client.files.create(file=("bench.jsonl", data), purpose="batch")
    return client.batches.create(input_file_id=f.id, endpoint=CHAT, completion_window="24h").id


def counts(client, bid: str) -> tuple[str, int]:
    b = client.batches.retrieve(bid)
    return b.status, (b.request_counts.completed + b.request_counts.failed) if b.request_counts else 0


def wait_done(client, bid: str, timeout: float = 1800, poll_s: float = 0.5) -> object:
    deadline = time.time() + timeout
    while time.time() < deadline:
        b = client.batches.retrieve(bid)
        if b.status in ("completed", "failed", "expired", "cancelled"):
            return b
        time.sleep(poll_s)
    raise RuntimeError(f"batch {bid} did not finish")


async def _one(client: httpx.AsyncClient, max_tokens: int, stream: bool, i: int):
    body = {"model": "small", "max_tokens": max_tokens, "stream": stream, "cache": False,
            "messages": [{"role": "user", "content": f"Real-time question number {i}, please answer."}]}
    if stream:
        body["stream_options"] = {"include_usage": True}
    t0 = time.perf_counter()
    ttft, tokens = None, 0
    if stream:
        async with client.stream("POST", CHAT, json=body) as resp:
            if resp.status_code != 200:
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
        resp = await client.post(CHAT, json=body)
        if resp.status_code != 200:
            return None
        tokens = resp.json()["usage"]["completion_tokens"]
    return time.perf_counter() - t0, tokens, ttft


async def load(url: str, concurrency: int, requests: int, max_tokens: int, stream: bool) -> LoadResult:
    """Closed loop: ``concurrency`` clients, ``requests`` in all (no vLLM-only fields: the gateway refuses them)."""
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=600, limits=limits) as client:
        await _one(client, 4, stream, -1)
        sem = asyncio.Semaphore(concurrency)

        async def worker(i: int):
            async with sem:
                return await _one(client, max_tokens, stream, i)

        t0 = time.perf_counter()
        results = await asyncio.gather(*(worker(i) for i in range(requests)))
        seconds = time.perf_counter() - t0
    ok = [r for r in results if r is not None]
    return LoadResult(len(results), len(results) - len(ok), sum(r[1] for r in ok), seconds,
                      [r[0] for r in ok], [r[2] for r in ok if r[2] is not None])


def realtime(url: str, args) -> dict:
    return asyncio.run(load(url, args.rt_concurrency, args.rt_requests, args.max_tokens, True)).row()


def realtime_items(url: str, n: int, concurrency: int, max_tokens: int) -> float:
    res = asyncio.run(load(url, concurrency, n, max_tokens, False))
    return (res.requests - res.errors) / res.seconds


def _clean(url: str, prefix: str) -> None:
    import redis

    r = redis.Redis.from_url(url)
    keys = list(r.scan_iter(match=f"{prefix}:*", count=1000))
    for i in range(0, len(keys), 500):
        r.delete(*keys[i:i + 500])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rt-concurrency", type=int, default=4)
    parser.add_argument("--rt-requests", type=int, default=200)
    parser.add_argument("--batch-lines", type=int, default=3000)
    parser.add_argument("--items", type=int, default=300)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--pool-share", type=float, default=None, help="override batch.pool_share")
    parser.add_argument("--busy-share", type=float, default=None, help="override batch.busy_share")
    parser.add_argument("--idle-window", type=float, default=None, help="override batch.idle_window_s")
    parser.add_argument("--profile", default="cpu", help="take the gate settings of this profile (none: defaults)")
    args = parser.parse_args()

    from openai import OpenAI
    from ray import serve

    from app.cli import ensure_tiny_models, start_gateway

    os.chdir(ROOT)
    ensure_tiny_models()
    config = yaml.safe_load((ROOT / "tests/gateway_test_config.yaml").read_text())
    config["batch"]["key_prefix"] = f"llmgw-bench-batch-{os.getpid()}"
    config["observability"] = {"canary": {"enabled": False}}
    if args.profile != "none":
        shipped = yaml.safe_load((ROOT / "cluster/profiles.yaml").read_text())["profiles"][args.profile]
        config["batch"].update({k: v for k, v in shipped["gateway"].get("batch", {}).items() if k in GATE_FIELDS})
    for name, field in (("pool_share", "pool_share"), ("busy_share", "busy_share"), ("idle_window", "idle_window_s")):
        if getattr(args, name) is not None:
            config["batch"][field] = getattr(args, name)
    gate = {k: config["batch"].get(k) for k in GATE_FIELDS}
    start_gateway(config, port=PORT)
    url = f"http://127.0.0.1:{PORT}"
    client = OpenAI(base_url=f"{url}/v1", api_key="bench", max_retries=2, timeout=120)
    cap = max(1, int(config["batch"].get("pool_share", 0.25) * config["pools"][0].get("max_ongoing_requests", 64)))
    try:
        if httpx.get(f"{url}/v1/batches", timeout=10).status_code == 404:
            raise SystemExit("the batch lane is not wired into this graph (app/graph.py)")
        idle = realtime(url, args)

        bid = submit(client, batch_file(args.batch_lines, "bg", args.max_tokens))
        while counts(client, bid)[1] < 50:  # the batch is running at full speed
            time.sleep(0.5)
        _, before = counts(client, bid)
        t0 = time.time()
        busy = realtime(url, args)
        status_after, after = counts(client, bid)
        during_items_s = (after - before) / (time.time() - t0)
        client.batches.cancel(bid)
        wait_done(client, bid)

        t_submit = time.time()
        bid = submit(client, batch_file(args.items, "tp", args.max_tokens))
        b = wait_done(client, bid, poll_s=0.1)
        wall = time.time() - t_submit  # upload + validation + every line + finalization
        if b.request_counts.failed:
            print(f"warning: {b.request_counts.failed} batch lines failed")
        batch_items_s = b.request_counts.completed / wall
        rt_items_s = realtime_items(url, args.items, cap, args.max_tokens)
    finally:
        serve.shutdown()
        _clean(config["batch"]["redis_url"], config["batch"]["key_prefix"])
    result = {
        "realtime_idle": idle, "realtime_with_batch": busy,
        "p99_ratio": round(busy["p99_ms"] / idle["p99_ms"], 3), "p50_ratio": round(busy["p50_ms"] / idle["p50_ms"], 3),
        "batch_items_per_s_during_realtime": round(during_items_s, 2),
        "batch_items_per_s_idle": round(batch_items_s, 2), "realtime_items_per_s_same_items": round(rt_items_s, 2),
        "batch_still_running_after_realtime": status_after == "in_progress",  # else the "busy" phase was partly idle
        "batch_concurrency_cap": cap, "gate": gate, "args": vars(args),
    }
    print(f"gate settings (None: BatchConfig default): {gate}")
    print(f"{'':28}{'p50 ms':>10}{'p99 ms':>10}{'ttft p50':>10}{'errors':>8}")
    for name, row in (("real-time, idle", idle), ("real-time, batch running", busy)):
        print(f"{name:28}{row['p50_ms']:>10}{row['p99_ms']:>10}{row['ttft_p50_ms']:>10}{row['errors']:>8}")
    print(f"p99 ratio {result['p99_ratio']} (target <= 1.2), p50 ratio {result['p50_ratio']}")
    print(f"batch items/s while real-time ran: {result['batch_items_per_s_during_realtime']}")
    print(f"{args.items} items: batch {result['batch_items_per_s_idle']} items/s vs real-time at concurrency {cap}: "
          f"{result['realtime_items_per_s_same_items']} items/s")
    out = ROOT / ".cache/bench/batch_priority.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
