"""Fault figures under steady load (issue 14): run by hand, numbers go to docs/reliability.md.

    python -m loadtests.faults [--engine vllm|echo] [--rate 4] [--window 45] [--phases all|a,b,...]
    python -m loadtests.faults --soak 1800 [--rate 4]

Takes /tmp/llmgw-graph.lock (it starts Ray and the whole Serve graph), then starts, on loopback only:
a private redis-server on --redis-port (``--save '' --appendonly no``; never the machine's Redis), the
fake OpenAI provider (tests/fakes/provider_server.py, a real HTTP server) and the gateway on --port
(tests/gateway_test_config.yaml with that Redis and that provider; ``--engine echo`` swaps the tiny
vLLM pools for the instant echo engine). A steady open-loop load (httpx, --rate requests/s, at most
--max-in-flight at once; half streamed, half cacheable repeats) runs through every phase, one after
another:

* ``pool_replica``   the small pool's replica is killed (Serve restarts it);
* ``cache_replica``  the cache replica is killed;
* ``redis_outage``   the private redis-server is stopped for 30 s, then started again;
* ``provider_faults`` both pools are kept down and the provider answers 500, then 429, then hangs past
                     its timeout, then breaks its streams (one sub-phase each);
* ``oversized_body`` 20 MB bodies (Content-Length, chunked, raw socket): the 413 or a reset? (issue 14 #2);
* ``disconnect_storm`` 64 streams are opened and dropped by the client after their first chunk.

Per phase: requests sent, answered (a complete 200, or an error status with an OpenAI-shaped JSON
error, or an SSE error event), errors by status/code, requests lost (no answer at all, or a 200 stream
cut without an error event; target 0), degraded answers by path, time to recover (fault start ->
the last failed or non-pool answer of the phase), and the breaker transitions /readyz showed.
``--soak`` runs the same load without faults and reports the RSS of every gateway process (Ray
workers, Serve proxy/controller/replicas, vLLM engine cores) at the start and the end, and the error
count per 5-minute window. Prints one JSON document and a markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import json
import os
import random
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
LOCK = "/tmp/llmgw-graph.lock"
APP = "llm-gateway"
PROVIDER_KEY_ENV = "LLMGW_FAULTS_PROVIDER_KEY"
PHASES = ("pool_replica", "cache_replica", "redis_outage", "provider_faults", "oversized_body", "disconnect_storm")
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


class Breakers:
    """Polls /readyz; remembers every breaker state change with its time."""

    def __init__(self, url: str, load: Load) -> None:
        self.url, self.load = url, load
        self.states: dict[str, str] = {}
        self.transitions: list[tuple[float, str, str, str]] = []

    async def run(self, stop: asyncio.Event) -> None:
        async with httpx.AsyncClient(base_url=self.url, timeout=5) as client:
            while not stop.is_set():
                try:
                    breakers = (await client.get("/readyz")).json().get("breakers", {})
                except (httpx.HTTPError, ValueError):
                    breakers = {}
                for name, state in breakers.items():
                    if self.states.get(name, "closed") != state:
                        self.transitions.append((round(self.load.now(), 1), name, self.states.get(name, "closed"),
                                                 state))
                    self.states[name] = state
                await asyncio.sleep(0.5)

    def between(self, start: float, end: float) -> list[str]:
        return [f"{t:.1f}s {n}: {a}->{b}" for t, n, a, b in self.transitions if start <= t < end]


# ---- the system under test --------------------------------------------------------------------
def start_redis(port: int) -> subprocess.Popen:
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--save", "", "--appendonly", "no",
                             "--bind", "127.0.0.1"], stdout=subprocess.DEVNULL)
    import redis

    for _ in range(100):
        try:
            redis.Redis(port=port).ping()
            return proc
        except redis.ConnectionError:
            time.sleep(0.05)
    raise RuntimeError(f"redis-server did not start on {port}")


def gateway_config(engine: str, redis_port: int, provider_url: str) -> dict:
    import yaml

    cfg = yaml.safe_load((ROOT / "tests" / "gateway_test_config.yaml").read_text())
    cfg.setdefault("cache", {})["redis_url"] = f"redis://127.0.0.1:{redis_port}/0"
    cfg["fallback"]["providers"] = [{"name": "fake-openai", "kind": "openai", "base_url": f"{provider_url}/v1",
                                     "model": "fake-gpt", "api_key_env": PROVIDER_KEY_ENV, "timeout_s": 3}]
    cfg.pop("observability", None)
    if engine == "echo":
        for pool in cfg["pools"]:
            pool.update(engine_kind="echo", engine={"model": f"echo-{pool['name']}",
                                                    "served_model_name": f"echo-{pool['name']}"})
    return cfg


def replicas(deployment: str) -> list[str]:
    import ray

    return [a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
            if a["namespace"] == "serve" and a["name"].startswith(f"SERVE_REPLICA::{APP}#{deployment}#")]


def kill(deployment: str) -> int:
    import ray

    names = replicas(deployment)
    for name in names:
        ray.kill(ray.get_actor(name, namespace="serve"), no_restart=False)
    return len(names)


async def wait_running(deployment: str, timeout: float = 300) -> float:
    from ray import serve
    from ray.serve.schema import ReplicaState

    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        states = serve.status().applications[APP].deployments[deployment].replica_states
        if states.get(ReplicaState.RUNNING, 0) >= 1 and sum(states.values()) == states.get(ReplicaState.RUNNING):
            return time.monotonic() - t0
        await asyncio.sleep(1)
    raise RuntimeError(f"{deployment} did not come back in {timeout} s")


def gateway_rss() -> dict[str, float]:
    """RSS (MB) of every process this run started (Ray, Serve actors, vLLM engines), by name."""
    import psutil

    out: dict[str, float] = {}
    for proc in psutil.Process().children(recursive=True):
        try:
            name = " ".join(proc.cmdline())[:80] or proc.name()
            if "redis-server" in name:
                continue
            out[f"{proc.pid} {name}"] = round(proc.memory_info().rss / 2**20, 1)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return out


# ---- phases ---------------------------------------------------------------------------------------
async def storm(url: str, n: int = 64) -> dict:
    """``n`` streams dropped by the client right after their first chunk."""
    dropped = 0

    async def drop(client: httpx.AsyncClient, i: int) -> None:
        nonlocal dropped
        body = {"model": "small", "messages": [{"role": "user", "content": f"storm {i} {time.time()}"}],
                "max_tokens": 64, "stream": True, "cache": False}
        try:
            async with client.stream("POST", "/v1/chat/completions", json=body) as resp:
                async for _ in resp.aiter_raw():
                    dropped += 1
                    break  # leaving the block closes the connection mid-stream
        except httpx.HTTPError:
            pass

    async with httpx.AsyncClient(base_url=url, timeout=60, limits=httpx.Limits(max_connections=n)) as client:
        await asyncio.gather(*(drop(client, i) for i in range(n)))
    in_flight = None
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        for _ in range(30):  # the pools' in-flight gauge must fall back (no leaked generation)
            text = (await client.get("/metrics")).text
            in_flight = sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                            if line.startswith("llmgw_pool_ongoing_requests{"))
            if in_flight <= 8:  # the steady load's own requests
                break
            await asyncio.sleep(1)
    return {"streams_dropped": dropped, "pool_in_flight_after": in_flight}


async def run_phases(args, url: str, provider, redis_holder: dict) -> dict:
    load = Load(url, args.rate, args.max_in_flight)
    breakers = Breakers(url, load)
    stop = asyncio.Event()
    workers = [asyncio.create_task(load.run(stop)), asyncio.create_task(breakers.run(stop))]
    report: dict = {}
    w = args.window

    async def phase(name: str, inject, restore=None, extra=None) -> None:
        start = load.now()
        await asyncio.sleep(5)  # a few seconds of normal traffic first
        fault_at = load.now()
        await inject()
        await asyncio.sleep(w)
        info = await restore() if restore else {}
        end = load.now()
        report[name] = {**summarize(load.outcomes, start, end, fault_at), **(info or {}), **(extra or {}),
                        "breaker_transitions": breakers.between(start, end)}
        print(f"[faults] {name}: {json.dumps(report[name])}", flush=True)

    if "pool_replica" in args.phases:
        async def restore_pool():
            return {"replica_back_s": round(await wait_running("pool-small"), 1)}
        await phase("pool_replica", lambda: asyncio.to_thread(kill, "pool-small"), restore_pool)
    if "cache_replica" in args.phases:
        async def restore_cache():
            return {"replica_back_s": round(await wait_running("CacheDeployment"), 1)}
        await phase("cache_replica", lambda: asyncio.to_thread(kill, "CacheDeployment"), restore_cache)
    if "redis_outage" in args.phases:
        async def stop_redis():
            redis_holder["proc"].terminate()
            redis_holder["proc"].wait(10)
            await asyncio.sleep(30)
            redis_holder["proc"] = start_redis(args.redis_port)
        await phase("redis_outage", stop_redis)
    if "provider_faults" in args.phases:
        keeper: dict = {}

        async def keep_pools_down() -> None:  # a restarted replica must not answer during the sub-phase
            while True:
                await asyncio.to_thread(kill, "pool-small")
                await asyncio.to_thread(kill, "pool-large")
                await asyncio.sleep(3)

        for mode in ("500", "429", "slow", "broken_stream"):
            async def pools_down_and(mode=mode):
                provider.mode = mode
                keeper["task"] = asyncio.create_task(keep_pools_down())

            async def restore_provider():
                keeper["task"].cancel()
                provider.mode = "ok"
                back = max(await wait_running("pool-small"), await wait_running("pool-large"))
                return {"pools_back_s": round(back, 1)}
            await phase(f"provider_{mode}", pools_down_and, restore_provider)
    if "oversized_body" in args.phases:  # issue 14 #2 on the live gateway: a 413, or a reset?
        from loadtests.body_limit_repro import outcome, raw_socket

        big = json.dumps({"model": "small", "messages": [{"role": "user", "content": "x" * (20 << 20)}]}).encode()

        def chunked():
            for i in range(0, len(big), 1 << 16):
                yield big[i : i + (1 << 16)]

        chat = f"{url}/v1/chat/completions"
        probes = {
            "httpx content-length": lambda: httpx.post(chat, content=big, timeout=60).status_code,
            "httpx chunked": lambda: httpx.post(chat, content=chunked(), timeout=60).status_code,
            "raw socket": lambda: raw_socket(args.port, "/v1/chat/completions", big),
        }
        report["oversized_body_20MB"] = {k: await asyncio.to_thread(outcome, f) for k, f in probes.items()}
        print(f"[faults] oversized_body: {json.dumps(report['oversized_body_20MB'])}", flush=True)
    if "disconnect_storm" in args.phases:
        result: dict = {}

        async def do_storm():
            result.update(await storm(url))
        await phase("disconnect_storm", do_storm, extra=result)
    stop.set()
    await asyncio.gather(*workers)
    report["load"] = {"rate": args.rate, "max_in_flight": args.max_in_flight, "generator_skipped": load.skipped}
    return report


async def run_soak(args, url: str) -> dict:
    load = Load(url, args.rate, args.max_in_flight)
    stop = asyncio.Event()
    rss_start = gateway_rss()
    task = asyncio.create_task(load.run(stop))
    await asyncio.sleep(args.soak)
    stop.set()
    await task
    rss_end = gateway_rss()
    windows = Counter(int(o.t // 300) for o in load.outcomes if o.code or not o.complete)
    growth = {k: round(100 * (rss_end[k] - v) / v, 1) for k, v in rss_start.items() if k in rss_end and v > 50}
    return {"soak": {**summarize(load.outcomes, 0, 1e9, 0), "seconds": args.soak,
                     "errors_per_5min": [windows.get(i, 0) for i in range(int(args.soak // 300) + 1)],
                     "rss_mb_start": rss_start, "rss_mb_end": rss_end, "rss_growth_pct": growth}}


def markdown(report: dict) -> str:
    rows = ["| phase | sent | answered | lost | errors by code | paths | recover (s) | breakers |",
            "|---|---:|---:|---:|---|---|---:|---|"]
    for name, r in report.items():
        if "sent" not in r:
            continue
        rows.append(f"| {name} | {r['sent']} | {r['answered']} | {r['lost']} | {r['errors_by_code'] or '-'} | "
                    f"{r['paths']} | {r['recover_s']} | {'; '.join(r.get('breaker_transitions', [])) or '-'} |")
    return "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--engine", choices=["vllm", "echo"], default="vllm")
    ap.add_argument("--rate", type=float, default=4.0, help="requests per second")
    ap.add_argument("--max-in-flight", type=int, default=32)
    ap.add_argument("--window", type=float, default=45.0, help="seconds each fault is observed")
    ap.add_argument("--phases", default="all")
    ap.add_argument("--soak", type=float, default=0.0, help="soak for this many seconds instead of the phases")
    ap.add_argument("--port", type=int, default=8021)
    ap.add_argument("--redis-port", type=int, default=6394)
    ap.add_argument("--out", type=Path, default=None, help="also write the JSON report here")
    args = ap.parse_args()
    args.phases = PHASES if args.phases == "all" else tuple(args.phases.split(","))
    lock = open(LOCK, "a")  # noqa: SIM115 (held for the whole run)
    print(f"[faults] waiting for {LOCK} ...", flush=True)
    fcntl.flock(lock, fcntl.LOCK_EX)
    sys.path.insert(0, str(ROOT))
    os.chdir(ROOT)
    from app.cli import ensure_tiny_models, start_gateway
    from tests.fakes.provider_server import FakeProvider

    os.environ[PROVIDER_KEY_ENV] = "sk-faults-provider-key"
    redis_holder = {"proc": start_redis(args.redis_port)}
    provider = FakeProvider(slow_s=10.0).start()
    try:
        if args.engine == "vllm":
            ensure_tiny_models()
        start_gateway(gateway_config(args.engine, args.redis_port, provider.url), port=args.port)
        url = f"http://127.0.0.1:{args.port}"
        for _ in range(600):
            try:
                ready = httpx.get(f"{url}/readyz", timeout=5).json()
                if set(ready.get("pools", {}).values()) == {"ok"}:
                    break
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(1)
        coro = run_soak(args, url) if args.soak else run_phases(args, url, provider, redis_holder)
        report = {"engine": args.engine, **asyncio.run(coro)}
        print(json.dumps(report, indent=2))
        print(markdown(report))
        if args.out:
            args.out.write_text(json.dumps(report, indent=2))
    finally:
        from ray import serve

        try:
            serve.shutdown()
        finally:
            import ray

            ray.shutdown()
            provider.stop()
            redis_holder["proc"].terminate()


if __name__ == "__main__":
    main()
