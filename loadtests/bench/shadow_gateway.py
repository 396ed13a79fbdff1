"""What shadow traffic adds to the client's latency, through the real graph, shadow on and off in one run.

    flock /tmp/llmgw-graph.lock nice -n 19 .venv/bin/python -m loadtests.bench.shadow_gateway \
        [--engine echo|tiny] [--rate 25] [--requests 6000] [--block-s 3] [--settle-s 0.75] [--sample-rate 1.0]

Starts the gateway (tests/gateway_test_config.yaml, port 8014, registry in memory; ``--engine echo``, the
default, puts both pools on the instant echo engine so only the gateway's own work shows and thousands of
requests are cheap; ``tiny`` keeps the tiny vLLM models). Two prompts with identical templates, each in an
A/B experiment with one 100 % control variant; only ``exp-on``'s experiment has a shadow (version 2, same
pool, ``--sample-rate``, default every request). Streaming chat at a fixed arrival rate (open loop: latency
counts from the scheduled send time), in two phases:

1. ``per request``: the arm (prompt) is drawn per request, one of each in every consecutive pair. Both arms
   carry the same background load of shadows, so the difference is what the shadow costs on the shadowed
   request's own path (the finisher's submit and anything that runs before its last byte).
2. ``blocks``: the arm alternates by block of ``--block-s`` seconds (ABBA order); the first ``--settle-s``
   of every block are sent but not counted (the previous block's shadows start 0.25 s after their answers).
   Here the shadowed block also carries its shadows' CPU and event-loop work, so the difference is all a
   shadow costs the clients: its own path plus its competition for the ingress and the pool.

Each phase's added p50 / p99 (shadowed − not) gets a 95 % paired bootstrap interval that resamples whole
time units holding both arms (loadtests/bench/shadow_stats.py); each phase is reported over all units and
over the "quiet" ones, where the load generator itself never fell more than ``--max-late-ms`` behind (the
machine starving this process, e.g. other work on a shared box; the criterion does not look at the arm,
and the client process runs no shadow). Prints the table, writes
.cache/bench/shadow_gateway.json and a PNG of both arms' latency distributions (``--png``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import time
import uuid
from pathlib import Path

import aiohttp
import httpx
import yaml

from loadtests.bench.proc_cpu import CpuSampler
from loadtests.bench.shadow_stats import Sample, phase_report, plot, quiet

ROOT = Path(__file__).resolve().parents[2]
PORT = 8014
CHAT = "/v1/chat/completions"
TEMPLATE = {"messages": [{"role": "system", "content": "You help {{ customer }} with {{ product }}."}],
            "variables": {"customer": {"type": "string"}, "product": {"type": "string"}}}
ARMS = {"on": "exp-on", "off": "exp-off"}
UNIT_S = 2.0  # per-request phase: the bootstrap's unit (both arms, ~2 s of the machine's state)


def echo_pools() -> list[dict]:
    """Both pools on the instant echo engine (what loadtests/bench/echo_gateway.yaml runs)."""
    return [{"name": name, "engine_kind": "echo",
             "engine": {"model": f"echo-{name}", "served_model_name": f"echo-{name}"},
             "max_ongoing_requests": 1000, "ray_actor_options": {"num_cpus": 0.25},
             "autoscaling_config": {"min_replicas": 1, "max_replicas": 1, "target_ongoing_requests": 256}}
            for name in ("small", "large")]


async def one(session: aiohttp.ClientSession, url: str, tenant: str, arm: str, i: int, max_tokens: int,
              scheduled: float) -> tuple[float, float, bool]:
    """One streaming request: (ms from its scheduled send time to [DONE], TTFT ms, ok)."""
    body = {"model": "small", "max_tokens": max_tokens, "stream": True, "cache": False, "user": f"u{i}",
            "messages": [{"role": "user", "content": f"Question {i}: where is my order, and when will it arrive?"}],
            "prompt_ref": {"name": ARMS[arm], "variables": {"customer": "Ann", "product": "Ray"}}}
    ttft = None
    ok = False
    try:
        async with session.post(url + CHAT, json=body, headers={"x-llmgw-tenant": tenant}) as resp:
            async for raw in resp.content:
                line = raw.decode("utf-8", "replace")
                if ttft is None and line.startswith("data: {") and '"content"' in line:
                    ttft = time.perf_counter() - scheduled
                if line.startswith("data: [DONE]"):
                    ok = resp.status == 200
    except aiohttp.ClientError:
        ok = False
    total = time.perf_counter() - scheduled
    return total * 1000, (ttft if ttft is not None else total) * 1000, ok


def schedule(phase: str, n: int, rate: float, block_s: float, settle_s: float, seed: int) -> list[tuple]:
    """[(offset s, arm, unit, keep)] for ``n`` requests at ``rate`` per second."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        t = i / rate
        if phase == "per request":
            if i % 2 == 0:
                first = rng.choice(("on", "off"))
            arm = first if i % 2 == 0 else ("off" if first == "on" else "on")
            out.append((t, arm, int(t // UNIT_S), True))
        else:
            block = int(t // block_s)
            arm = "off" if block % 4 in (0, 3) else "on"  # ABBA: a linear drift hits both arms alike
            out.append((t, arm, block // 2, t - block * block_s >= settle_s))
    return out


async def run_phase(url: str, tenant: str, plan: list[tuple], max_tokens: int
                    ) -> tuple[list[Sample], float, float]:
    """Send ``plan`` open loop; the samples, how late the sender fell behind at worst (s), its start (perf_counter)."""
    conn = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=120)
    samples: list[Sample | None] = [None] * len(plan)
    late = 0.0
    async with aiohttp.ClientSession(connector=conn, timeout=timeout) as session:
        async def fire(k: int, scheduled: float, late_s: float) -> None:
            _, arm, unit, keep = plan[k]
            total, ttft, ok = await one(session, url, tenant, arm, k, max_tokens, scheduled)
            samples[k] = Sample(arm, unit, keep, total, ttft, ok, late_s * 1000)

        t0 = time.perf_counter() + 0.05
        tasks = []
        for k, (offset, *_rest) in enumerate(plan):
            delay = t0 + offset - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            late = max(late, -delay)
            tasks.append(asyncio.create_task(fire(k, t0 + offset, max(0.0, -delay))))
        await asyncio.gather(*tasks)
    return [s for s in samples if s is not None], late, t0


def cpu_by_arm(sampler: CpuSampler, t0: float, plan: list[tuple], block_s: float, settle_s: float) -> dict:
    """Blocks phase: CPU ms per request of each process, shadowed blocks vs not (loadtests/bench/proc_cpu.py)."""
    def arm_at(offset: float) -> tuple[str, bool] | None:
        if offset < 0 or offset > plan[-1][0]:
            return None
        block = int(offset // block_s)
        return ("off" if block % 4 in (0, 3) else "on"), offset - block * block_s >= settle_s

    def sent(arm: str, a: float, b: float) -> int:
        return sum(1 for offset, which, *_ in plan if which == arm and a <= offset < b)

    return sampler.by_arm(t0, arm_at, sent)


def _admin() -> dict[str, str]:
    return {"Authorization": f"Bearer {os.environ['LLMGW_ADMIN_KEY']}"}


def shadow_runs(url: str) -> dict[str, float]:
    text = httpx.get(f"{url}/metrics", timeout=30, headers=_admin()).text
    out: dict[str, float] = {}
    for m in re.finditer(r'^llmgw_shadow_runs_total\{[^}]*outcome="([a-z_]+)"[^}]*\} ([0-9.e+]+)$', text, re.M):
        out[m.group(1)] = out.get(m.group(1), 0.0) + float(m.group(2))
    return out


def setup(url: str, tenant: str, sample_rate: float) -> None:
    """Two prompts (versions 1 and 2, identical), each in a 100 % control experiment; only exp-on shadows."""
    def call(method: str, path: str, body: dict) -> None:
        r = httpx.request(method, f"{url}{path}", json=body, headers=_admin(), timeout=60)
        if r.status_code != 200:
            raise SystemExit(f"{method} {path}: {r.status_code} {r.text[:300]}")

    for name in ARMS.values():
        call("POST", "/admin/prompts", {"tenant": tenant, "name": name, "template": TEMPLATE, "labels": ["production"]})
        call("POST", "/admin/prompts", {"tenant": tenant, "name": name, "template": TEMPLATE})
        spec = {"tenant": tenant, "name": f"{name}-x", "prompt": name, "key": "request",
                "variants": [{"name": "control", "weight": 100}]}
        if name == "exp-on":
            spec["shadow"] = {"version": 2, "sample_rate": sample_rate, "budget_usd": 1000.0}
        call("POST", "/admin/experiments", spec)


def gateway_config(args: argparse.Namespace) -> dict:
    config = yaml.safe_load((ROOT / "tests/gateway_test_config.yaml").read_text())
    config["batch"] = {"enabled": False}
    config["observability"] = {"canary": {"enabled": False}}
    # a machine stall must not turn into fallbacks to the other pool (the test config's 4 s would): same path
    config["fallback"]["pool_first_chunk_timeout_s"] = 30
    if args.engine == "echo":
        config["pools"] = echo_pools()
    shadow_cfg = config.setdefault("prompts", {}).setdefault("shadow", {})
    for key, value in (("max_concurrency", args.shadow_concurrency), ("start_delay_s", args.start_delay),
                       ("runner", args.runner)):
        if value is not None:
            shadow_cfg[key] = value
    if args.redis_url:  # every store on Redis under this run's own key prefix: the ShadowWorker shares the registry
        config["redis"] = {"url": args.redis_url}
        config["prompts"]["key_prefix"] = args.key_prefix
        for section in ("policy", "cache"):
            config.setdefault(section, {})["key_prefix"] = f"{args.key_prefix}:{section}"
    return config


def clean_redis(url: str, prefix: str) -> int:
    import redis

    client = redis.Redis.from_url(url)
    keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
    for i in range(0, len(keys), 500):
        client.delete(*keys[i:i + 500])
    return len(keys)


def print_report(reports: dict[str, dict], runs: dict[str, dict]) -> None:
    print(f"{'phase':26}{'arm':11}{'n':>6}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'max ms':>9}{'ttft p99':>10}")
    for phase, rep in reports.items():
        for arm, label in (("off", "no shadow"), ("on", "shadowed")):
            r = rep[arm]
            print(f"{phase:26}{label:11}{r['n']:>6}{r.get('p50_ms', '-'):>9}{r.get('p95_ms', '-'):>9}"
                  f"{r.get('p99_ms', '-'):>9}{r.get('max_ms', '-'):>9}{r.get('ttft_p99_ms', '-'):>10}")
        for q in (50, 99):
            d = rep[f"added_p{q}_ms"]
            print(f"{'':26}added p{q}: {d['point']:+.2f} ms, 95 % CI [{d['ci95'][0]:+.2f}, {d['ci95'][1]:+.2f}]")
        print(f"{'':26}units {rep['units']}, shadow runs: {runs[phase]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--engine", choices=("echo", "tiny"), default="echo")
    parser.add_argument("--rate", type=float, default=25.0, help="requests per second (open loop)")
    parser.add_argument("--requests", type=int, default=6000, help="per phase")
    parser.add_argument("--phases", default="per request,blocks")
    parser.add_argument("--block-s", type=float, default=3.0)
    parser.add_argument("--settle-s", type=float, default=0.75)
    parser.add_argument("--max-tokens", type=int, default=8)
    parser.add_argument("--sample-rate", type=float, default=1.0, help="the shadow's sample_rate")
    parser.add_argument("--shadow-concurrency", type=int, default=None, help="prompts.shadow.max_concurrency")
    parser.add_argument("--start-delay", type=float, default=None, help="prompts.shadow.start_delay_s")
    parser.add_argument("--runner", choices=("auto", "worker", "ingress"), default=None,
                        help="prompts.shadow.runner (worker needs --redis-url)")
    parser.add_argument("--redis-url", default=None, help="registry on this Redis (e.g. redis://127.0.0.1:6379/9)")
    parser.add_argument("--rounds", type=int, default=2000, help="bootstrap resamples")
    parser.add_argument("--png", type=Path, default=ROOT / ".cache/bench/shadow_gateway.png")
    parser.add_argument("--label", default="", help="a note for the figure's title")
    parser.add_argument("--max-late-ms", type=float, default=50.0,
                        help="quiet units: the load generator never further behind schedule than this")
    args = parser.parse_args()
    args.key_prefix = f"llmgw-bench-shadow:{uuid.uuid4().hex[:8]}"

    from ray import serve

    from app.cli import ensure_tiny_models, start_gateway

    os.chdir(ROOT)
    os.environ.setdefault("LLMGW_ADMIN_KEY", "sk-llmgw-bench-admin-" + uuid.uuid4().hex)
    if args.engine == "tiny":
        ensure_tiny_models()
    start_gateway(gateway_config(args), port=PORT)
    url = f"http://127.0.0.1:{PORT}"
    tenant = f"shadow-bench-{uuid.uuid4().hex[:6]}"
    phases: dict[str, list[Sample]] = {}
    runs: dict[str, dict] = {}
    late: dict[str, float] = {}
    cpu: dict[str, dict] = {}
    try:
        setup(url, tenant, args.sample_rate)
        warm = schedule("per request", min(400, args.requests), args.rate, args.block_s, args.settle_s, seed=99)
        asyncio.run(run_phase(url, tenant, warm, args.max_tokens))
        for seed, phase in enumerate(p.strip() for p in args.phases.split(",")):
            time.sleep(2)  # the previous phase's shadows drain
            before = shadow_runs(url)
            plan = schedule(phase, args.requests, args.rate, args.block_s, args.settle_s, seed)
            with CpuSampler() as sampler:
                phases[phase], late[phase], t0 = asyncio.run(run_phase(url, tenant, plan, args.max_tokens))
            if phase == "blocks":
                cpu[phase] = {**cpu_by_arm(sampler, t0, plan, args.block_s, args.settle_s), "nice": sampler.nice}
            time.sleep(2)
            after = shadow_runs(url)
            runs[phase] = {k: after.get(k, 0) - before.get(k, 0) for k in after if after.get(k, 0) != before.get(k, 0)}
    finally:
        serve.shutdown()
        if args.redis_url:
            print(f"removed {clean_redis(args.redis_url, args.key_prefix)} bench keys from Redis")
    reports = {phase: phase_report(samples, args.rounds) for phase, samples in phases.items()}
    quiet_phases = {f"{phase}, quiet units": quiet(samples, args.max_late_ms) for phase, samples in phases.items()}
    reports.update({phase: phase_report(samples, args.rounds) for phase, samples in quiet_phases.items()})
    runs.update({phase: runs[phase.split(",")[0]] for phase in quiet_phases})
    print_report(reports, runs)
    print(f"sender late at worst: {late}")
    for phase, arms in cpu.items():
        print(f"nice values: {arms['nice']}")
        for arm in ("off", "on"):
            row = arms.get(arm, {})
            top = ", ".join(f"{k} {v:.2f}" for k, v in row.items() if not k.startswith("_"))
            print(f"CPU ms per request, {phase}, {arm}: {top} "
                  f"(busy cores {row.get('_cores')}, n {row.get('_requests')})")
    title = (f"shadow on vs off, {args.engine} engine, {args.rate:g} req/s open loop, sample_rate {args.sample_rate:g}"
             f"{', ' + args.label if args.label else ''} (95 % paired bootstrap CI)")
    plot({**phases, **quiet_phases}, reports, args.png, title)
    out = ROOT / ".cache/bench/shadow_gateway.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "reports": reports,
                               "shadow_runs": runs, "sender_late_s": late, "cpu_ms_per_request": cpu,
                               "raw": {p: [[s.arm, s.unit, s.keep, round(s.total_ms, 2), s.ok, round(s.late_ms, 1)]
                                           for s in samples]
                                       for p, samples in phases.items()}}, indent=1))
    print(f"wrote {out} and {args.png}")


if __name__ == "__main__":
    main()
