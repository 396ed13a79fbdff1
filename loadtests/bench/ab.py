"""Before/after overhead of two checkouts of the gateway, side by side in one run.

    git worktree add /tmp/llmgw-baseline <old-commit>   # then: ln -s $PWD/.cache /tmp/llmgw-baseline/.cache
    python -m loadtests.bench.ab --trees /tmp/llmgw-baseline,. --rps 10,30,50 --duration 10

For each tree in turn: start the echo-engine gateway from that tree (``PYTHONPATH`` and working
directory set to it, so Ray's workers import its code), then at every RPS level run the direct echo
upstream and the gateway back to back (overhead = gateway percentile − direct percentile at the
same RPS, the same method as ``suite.py``'s item 1), for the cache-miss path (``model: auto``) and
the bypass path (``model: small``, ``cache: false``) and exact cache hits (``model: auto``, one primed
prompt). Each row also gives the CPU milliseconds per request that each Serve process (proxy,
replicas) used, read from ``/proc`` around the gateway run, and each tree's idle CPU (ms per second with
no traffic, ``--idle-s``): background work that a low RPS spreads over few requests. ``--prompts questions``
sends everyday questions instead of word salad. ``--rounds 2`` alternates the trees twice so drift in the
machine's load hits both. A tree may carry extra environment variables for its gateway
(``path+NAME=value``), e.g. to try Ray Serve flags. Writes ``.cache/bench/ab-<timestamp>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

from loadtests.bench import echo_server
from loadtests.bench.env_spec import split_env
from loadtests.bench.proc_cpu import cpu_s, stat_fields
from loadtests.bench.suite import ECHO_URL, GATEWAY_PORT, ROOT, bench_litellm, load, stop, wait_http


def parse_tree(spec: str) -> tuple[Path, dict[str, str]]:
    """``path`` or ``path+NAME=value+NAME2=value2`` (extra environment for that gateway run)."""
    path, extra = split_env(spec)
    return Path(path).resolve(), extra


def start_tree_gateway(tree: Path, config: Path, timeout: float, extra_env: dict[str, str]) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(tree), **extra_env}
    log = (ROOT / f".cache/bench/ab-{tree.name or 'tree'}.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "app.cli", "run", "--config", str(config), "--port",
                             str(GATEWAY_PORT)], cwd=tree, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    if not wait_http(f"http://127.0.0.1:{GATEWAY_PORT}/readyz", timeout, proc):
        stop(proc, 30)
        raise RuntimeError(f"gateway from {tree} did not come up (log {log.name})")
    return proc


def _descends_from(pid: str, root: int) -> bool:
    for _ in range(32):
        if int(pid) == root:
            return True
        pid = stat_fields(pid)[1]  # ppid
        if pid in ("0", "1"):
            return False
    return False


def serve_cpu_seconds(root: int) -> dict[str, float]:
    """CPU seconds (user + system) used so far by each Serve process (proxy, replicas) under ``root``.

    Only descendants of our gateway process count (Ray starts its workers below the driver):
    other gateways on the machine have replicas with the same names.
    """
    out: dict[str, float] = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            name = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
            is_haproxy = Path(name).name == "haproxy"  # the HTTP front door with RAY_SERVE_ENABLE_HA_PROXY=1
            if not (name.startswith(("ray::ServeReplica", "ray::ProxyActor")) or is_haproxy) \
                    or not _descends_from(pid, root):
                continue
            used = cpu_s(pid)
        except (OSError, IndexError, ValueError):
            continue
        label = "haproxy" if is_haproxy else name.removeprefix("ray::").split(".")[0].replace(
            "ServeReplica:llm-gateway:", "")
        if used is not None:
            out[label] = out.get(label, 0.0) + used
    return out


def cpu_ms_per(before: dict[str, float], after: dict[str, float], units: float) -> dict[str, float]:
    """CPU ms per unit (a request, a second) of each process between two readings, largest first, and their total."""
    per = {k: round((after[k] - before[k]) * 1000 / max(1, units), 2) for k in after if k in before}
    return {**dict(sorted(per.items(), key=lambda kv: -kv[1])), "total": round(sum(per.values()), 2)}


def idle_cpu_ms_per_s(root: int, seconds: float) -> dict[str, float]:
    """CPU ms per second each Serve process uses with no traffic (control loops, metrics pushes, health checks):
    at 10 RPS, every 10 ms/s of it reads as 1 ms per request in the rows."""
    before = serve_cpu_seconds(root)
    time.sleep(seconds)
    return cpu_ms_per(before, serve_cpu_seconds(root), seconds)


QUESTIONS = ROOT.parent / "shared/data/cache/qqp_pairs_dev.jsonl"


def question_prompts() -> list[str]:
    """Everyday questions (the first side of each QQP pair, deduplicated, in a fixed shuffle): unique prompts that
    read like traffic, unlike the word salad + hex id of ``unique_prompt``, which no text pre-screen clears."""
    if not QUESTIONS.is_file():
        raise SystemExit(f"--prompts questions reads {QUESTIONS} (../shared/data); it is not there")
    seen: dict[str, None] = {}
    for line in QUESTIONS.read_text().splitlines():
        seen.setdefault(json.loads(line)["a"].strip(), None)
    out = list(seen)
    random.Random(0).shuffle(out)
    return out


def measure(url: str, levels: list[float], duration: float, root: int, pool: list[str] | None = None) -> list[dict]:
    """Every path at every level; with ``pool`` each row takes its own slice of it as prompts (so a miss stays a
    miss and every tree is sent the same texts), else unique word-salad prompts."""
    rows = []
    taken = 0
    for rps in levels:
        hit_prompt = f"What is the capital of France? Answer in one word. ({rps:g} rps)"
        load(url, 1, 1, model="auto", prompts=[hit_prompt], warmup=0)  # prime: the "hit" rows are exact hits
        paths = (("miss", {"model": "auto"}), ("bypass", {"model": "small", "extra_body": {"cache": False}}),
                 ("hit", {"model": "auto", "prompts": [hit_prompt]}),
                 ("stream", {"model": "small", "stream": True, "extra_body": {"cache": False}}))
        for label, kw in paths:
            direct = load(ECHO_URL, rps, duration)
            if pool is not None and "prompts" not in kw:
                n = int(rps * duration)
                kw = {**kw, "prompts": pool[taken : taken + n]}
                taken += n
                if len(kw["prompts"]) < n:
                    raise SystemExit(f"--prompts questions: {len(pool)} questions are too few for this run")
            before = serve_cpu_seconds(root)
            target = load(url, rps, duration, warmup=0, **kw)
            cpu = cpu_ms_per(before, serve_cpu_seconds(root), target["sent"])
            row = {"rps": rps, "path": label, "direct": direct, "gateway": target,
                   "overhead_p50_ms": round(target["p50_ms"] - direct["p50_ms"], 2),
                   "overhead_p99_ms": round(target["p99_ms"] - direct["p99_ms"], 2),
                   "serve_cpu_ms_per_request": cpu}
            rows.append(row)
            print(f"    {label:6} @ {rps:>5g} rps: added p50/p99 {row['overhead_p50_ms']:>9.1f} / "
                  f"{row['overhead_p99_ms']:>9.1f} ms  achieved {target['achieved_rps']} rps, "
                  f"errors {target['errors']}/{target['sent']}, cache {target.get('cache')}", flush=True)
            print(f"           Serve CPU ms/request: {cpu}", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trees", default=".", help="comma-separated checkouts, e.g. /tmp/llmgw-baseline,. ; "
                        "a tree may carry extra env: /tmp/x+RAY_SERVE_RUN_ROUTER_IN_SEPARATE_LOOP=0")
    parser.add_argument("--rps", default="10,30,50")
    parser.add_argument("--duration", type=float, default=10)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--prompts", choices=("salad", "questions"), default="salad",
                        help="salad: random words + hex id (the baseline's figures); questions: everyday questions "
                        "from ../shared/data (QQP), which the injection pre-screen mostly clears")
    parser.add_argument("--idle-s", type=float, default=10, help="seconds of no traffic to read idle CPU over")
    parser.add_argument("--litellm", action="store_true", help="also LiteLLM (suite item 2) at the same levels")
    parser.add_argument("--gateway-config", type=Path, default=ROOT / "loadtests/bench/echo_gateway.yaml")
    args = parser.parse_args()
    trees = [parse_tree(t) for t in args.trees.split(",")]
    pool = question_prompts() if args.prompts == "questions" else None
    levels = [float(x) for x in args.rps.split(",")]
    (ROOT / ".cache/bench").mkdir(parents=True, exist_ok=True)
    results: dict = {"timestamp": time.strftime("%Y-%m-%dT%H:%M:%S"), "prompts": args.prompts,
                     "load_avg_start": os.getloadavg(),
                     "duration_s": duration if (duration := args.duration) else None, "runs": []}
    echo = echo_server.start(8201)
    try:
        if args.litellm:
            print("[litellm] LiteLLM proxy vs direct echo", flush=True)
            results["litellm"] = bench_litellm(levels, args.duration)
        for rnd in range(args.rounds):
            for tree, extra_env in trees:
                commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=tree, capture_output=True,
                                        text=True).stdout.strip()
                dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=tree,
                                            capture_output=True, text=True).stdout.strip())
                print(f"[round {rnd + 1}] {tree} ({commit}{'+dirty' if dirty else ''}) {extra_env or ''}, load avg "
                      f"{os.getloadavg()[0]:.1f}", flush=True)
                gw = start_tree_gateway(tree, args.gateway_config, 300, extra_env)
                try:
                    load(f"http://127.0.0.1:{GATEWAY_PORT}", 5, 2, model="auto")  # warm every hop
                    time.sleep(2)
                    idle = idle_cpu_ms_per_s(gw.pid, args.idle_s)
                    print(f"    idle CPU ms/s: {idle}", flush=True)
                    rows = measure(f"http://127.0.0.1:{GATEWAY_PORT}", levels, args.duration, gw.pid, pool)
                finally:
                    stop(gw)
                results["runs"].append({"round": rnd + 1, "tree": str(tree), "commit": commit, "dirty": dirty,
                                        "env": extra_env, "load_avg": os.getloadavg(), "idle_cpu_ms_per_s": idle,
                                        "rows": rows})
    finally:
        stop(echo, 10)
    out = ROOT / f".cache/bench/ab-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
