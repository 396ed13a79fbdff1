"""Zero-downtime config update, measured: `serve deploy` with a changed engine argument of one pool
while a bounded load loop runs (loopback only). Prints and returns failed requests and latencies.

    flock /tmp/llmgw-graph.lock python -m loadtests.rolling_update --duration 150 --concurrency 4

The rendered layout (each pool its own Serve application; `--one-app` for one). On its own
`ray start --head` (4 logical CPUs: room for each pool's replacement replica, which Serve starts while
the old one drains). Run by hand (about 10 min here, too slow for CI); figures: docs/deploy.md.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any

import yaml

from app.deploy.bind_args import split_pool_apps
from app.deploy.profiles import load_profile
from app.deploy.render import serve_config
from loadtests.local_cluster import LocalCluster, ask, free_port


@dataclass
class Outcome:
    t: float
    ok: bool
    status: int
    path: str
    latency_s: float
    stream: bool
    error: str = ""  # the start of a failed response's body


def _one(url: str, i: int) -> Outcome:
    stream = i % 2 == 0
    start = time.time()
    try:
        resp = ask(url, model="small", content=f"rolling {i}", max_tokens=16, stream=stream, timeout=120)
        ok = resp.status_code == 200 and (not stream or resp.text.rstrip().endswith("data: [DONE]"))
        return Outcome(start, ok, resp.status_code, resp.headers.get("x-llmgw-path", ""), time.time() - start, stream,
                       "" if ok else resp.text[:300])
    except Exception as exc:  # a dropped connection counts as a failure
        return Outcome(start, False, -1, "", time.time() - start, stream, repr(exc)[:300])


def _load(url: str, stop: threading.Event, out: list[Outcome], worker: int) -> None:
    i = worker * 1_000_000
    while not stop.is_set():
        out.append(_one(url, i))
        i += 1


def _replica_names(cluster: LocalCluster, deployment: str, app: str = "llm-gateway") -> set[str]:
    actors = cluster.state("actors", "state=ALIVE")
    return {a["name"] for a in actors if (a.get("name") or "").startswith(f"SERVE_REPLICA::{app}#{deployment}#")}


def _apps(config: dict[str, Any]) -> dict[str, str]:
    """Deployment -> its Serve application (the pools' own apps when split)."""
    names = {app["name"] for app in config["applications"]}
    return {d: (f"llm-gateway-{d}" if f"llm-gateway-{d}" in names else "llm-gateway")
            for d in ("pool-small", "pool-large", "Router", "Ingress")}


def _wait_all(cluster: LocalCluster, config: dict[str, Any], timeout: float = 480) -> None:
    deadline = time.time() + timeout
    for app in config["applications"]:
        cluster.wait_healthy(app["name"], timeout=max(10.0, deadline - time.time()))


def _pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else 0.0


def _set(args: dict[str, Any], dotted: str, value: Any) -> None:
    *path, last = dotted.split(".")
    for key in path:
        args = args.setdefault(key, {})
    args[last] = value


def run(duration_s: float = 150, concurrency: int = 4, warmup_s: float = 15, num_cpus: int = 4,
        overrides: dict[str, Any] | None = None, small_replicas: int = 1, pool_apps: bool = True,
        small_surge: int | None = None) -> dict[str, Any]:
    from app.cli import ensure_tiny_models

    ensure_tiny_models()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    base = serve_config(load_profile("cpu"), http_port=port)
    for dotted, value in (overrides or {}).items():  # gateway args, e.g. guardrails.input.enabled=false
        _set(base["applications"][0]["args"], dotted, value)
    for pool in base["applications"][0]["args"]["pools"]:
        if pool["name"] == "small":
            pool["autoscaling_config"].update(min_replicas=small_replicas, max_replicas=small_replicas)
            if small_surge is not None:  # Serve starts the replacement before it stops the old replica
                pool["max_surge_percent"] = small_surge
    changed = copy.deepcopy(base)
    small = next(p for p in changed["applications"][0]["args"]["pools"] if p["name"] == "small")
    small["engine"]["max_num_seqs"] = small["engine"].get("max_num_seqs", 64) // 2  # the engine must restart
    if pool_apps:  # each pool its own Serve application: only the changed pool's app is re-versioned
        base, changed = split_pool_apps(base), split_pool_apps(changed)
    apps = _apps(base)
    cluster = LocalCluster()
    outcomes: list[Outcome] = []
    try:
        cluster.start_head(num_cpus=num_cpus)
        cluster.deploy(base)
        _wait_all(cluster, base)
        probe = _one(url, -1)
        if not probe.ok:  # measure an update only on a gateway that answers
            raise RuntimeError(f"the gateway does not answer before the update: {probe}")
        before = {d: _replica_names(cluster, d, app) for d, app in apps.items()}
        stop = threading.Event()
        workers = [threading.Thread(target=_load, args=(url, stop, outcomes, w), daemon=True)
                   for w in range(concurrency)]
        for w in workers:
            w.start()
        time.sleep(warmup_s)
        t_deploy = time.time()
        cluster.deploy(changed)
        time.sleep(5)
        _wait_all(cluster, changed)
        t_healthy = time.time()
        time.sleep(max(0.0, duration_s - (t_healthy - t_deploy) - warmup_s))
        stop.set()
        for w in workers:
            w.join(150)
        after = {d: _replica_names(cluster, d, apps[d]) for d in before}
    finally:
        with contextlib.suppress(Exception):  # graceful: replicas stop their engines
            cluster.serve("shutdown", "-y")
            time.sleep(10)
        leftovers = cluster.shutdown(describe=True)  # what outlived its node, with its command line
        cluster.cleanup()
    window = [o for o in outcomes if t_deploy <= o.t <= t_healthy]
    paths: dict[str, int] = {}
    for o in outcomes:
        paths[o.path or "none"] = paths.get(o.path or "none", 0) + 1
    return {
        "requests": len(outcomes),
        "failed": sum(not o.ok for o in outcomes),
        "failures": [asdict(o) for o in outcomes if not o.ok][:20],
        "paths": paths,
        "update_s": round(t_healthy - t_deploy, 1),
        "during_update": {"requests": len(window), "failed": sum(not o.ok for o in window),
                          "p50_s": round(_pct([o.latency_s for o in window], 0.5), 3),
                          "p99_s": round(_pct([o.latency_s for o in window], 0.99), 3),
                          "max_s": round(max((o.latency_s for o in window), default=0.0), 3)},
        "steady_p50_s": round(_pct([o.latency_s for o in outcomes if o.t < t_deploy], 0.5), 3),
        "restarted": {d: before[d] != after[d] for d in before},
        "leftover_processes": leftovers,
        "concurrency": concurrency,
        "pool_apps": pool_apps,
        "small_surge_percent": small_surge,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=150)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--num-cpus", type=int, default=4)
    parser.add_argument("--small-replicas", type=int, default=1, help="replicas of the small pool")
    parser.add_argument("--set", action="append", default=[], metavar="DOTTED.KEY=YAML",
                        help="override a gateway arg of the cpu profile (repeatable)")
    parser.add_argument("--one-app", action="store_true",
                        help="everything in one Serve application (default: each pool its own, as committed)")
    parser.add_argument("--small-surge", type=int, default=None, metavar="PERCENT",
                        help="max_surge_percent of the small pool (needs a free CPU for the replacement)")
    parser.add_argument("--out", default=None, help="write the result as JSON here")
    args = parser.parse_args()
    overrides = {k: yaml.safe_load(v) for k, v in (item.split("=", 1) for item in args.set)}
    result = run(args.duration, args.concurrency, num_cpus=args.num_cpus, overrides=overrides,
                 small_replicas=args.small_replicas, pool_apps=not args.one_app,
                 small_surge=args.small_surge)
    result["overrides"] = overrides
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
