"""The phase sequence of a fault run, the report, and ``main`` (``python -m loadtests.faults``)."""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from loadtests.faults.load import Breakers, Load, summarize
from loadtests.faults.system import LOCK, PROVIDER_KEY_ENV, ROOT, gateway_config, gateway_rss, start_redis

PHASES = ("pool_replica", "cache_replica", "redis_outage", "provider_faults", "oversized_body", "disconnect_storm")


@dataclass
class Run:
    """What every phase module gets: the gateway, the load running through it, and the report to fill."""

    args: argparse.Namespace
    url: str
    provider: Any  # tests.fakes.provider_server.FakeProvider
    redis_holder: dict
    load: Load
    breakers: Breakers
    report: dict = field(default_factory=dict)

    async def phase(self, name: str, inject: Callable[[], Awaitable[Any]],
                    restore: Callable[[], Awaitable[dict | None]] | None = None, extra: dict | None = None) -> None:
        """A few seconds of normal traffic, the fault, ``--window`` seconds of observation, the restore."""
        start = self.load.now()
        await asyncio.sleep(5)
        fault_at = self.load.now()
        await inject()
        await asyncio.sleep(self.args.window)
        info = await restore() if restore else {}
        end = self.load.now()
        self.report[name] = {**summarize(self.load.outcomes, start, end, fault_at), **(info or {}), **(extra or {}),
                             "breaker_transitions": self.breakers.between(start, end)}
        print(f"[faults] {name}: {json.dumps(self.report[name])}", flush=True)


async def run_phases(args, url: str, provider, redis_holder: dict) -> dict:
    import importlib

    load = Load(url, args.rate, args.max_in_flight)
    run = Run(args, url, provider, redis_holder, load, Breakers(url, load))
    stop = asyncio.Event()
    workers = [asyncio.create_task(load.run(stop)), asyncio.create_task(run.breakers.run(stop))]
    for name in PHASES:
        if name in args.phases:
            await importlib.import_module(f"loadtests.faults.phases.{name}").run(run)
    stop.set()
    await asyncio.gather(*workers)
    run.report["load"] = {"rate": args.rate, "max_in_flight": args.max_in_flight, "generator_skipped": load.skipped}
    return run.report


async def run_soak(args, url: str) -> dict:
    """Steady load without faults: RSS of every gateway process when ready, after ``--warmup`` s of load (the
    start figure: first requests allocate once), every 5 minutes and at the end; errors per 5-minute window."""
    load = Load(url, args.rate, args.max_in_flight)
    stop = asyncio.Event()
    rss_ready = gateway_rss()
    task = asyncio.create_task(load.run(stop))
    await asyncio.sleep(args.warmup)
    rss_start = gateway_rss()
    samples = [(round(load.now()), rss_start)]
    t_end = load.now() + args.soak
    while load.now() < t_end:
        await asyncio.sleep(min(300.0, max(0.0, t_end - load.now())))
        samples.append((round(load.now()), gateway_rss()))
    stop.set()
    await task
    rss_end = samples[-1][1]
    windows = Counter(int(o.t // 300) for o in load.outcomes if o.code or not o.complete)
    growth = {k: round(100 * (rss_end[k] - v) / v, 1) for k, v in rss_start.items() if k in rss_end and v > 50}
    total = round(load.now())
    return {"soak": {**summarize(load.outcomes, 0, 1e9, 0), "seconds": total, "warmup_s": args.warmup,
                     "achieved_rate": round(len(load.outcomes) / max(1, total), 2), "generator_skipped": load.skipped,
                     "errors_per_5min": [windows.get(i, 0) for i in range(int(total // 300) + 1)],
                     "rss_mb_ready": rss_ready, "rss_mb_start": rss_start, "rss_mb_end": rss_end,
                     "rss_growth_pct": growth,
                     "rss_total_mb": [(t, round(sum(r.values()), 1)) for t, r in samples],
                     "rss_mb_samples": samples}}


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
    import loadtests.faults as package

    ap = argparse.ArgumentParser(prog="python -m loadtests.faults", description=package.__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--engine", choices=["vllm", "echo"], default="vllm")
    ap.add_argument("--rate", type=float, default=4.0, help="requests per second")
    ap.add_argument("--max-in-flight", type=int, default=32)
    ap.add_argument("--window", type=float, default=45.0, help="seconds each fault is observed")
    ap.add_argument("--phases", default="all")
    ap.add_argument("--soak", type=float, default=0.0, help="soak for this many seconds instead of the phases")
    ap.add_argument("--warmup", type=float, default=120.0, help="soak: seconds of load before the start RSS")
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
