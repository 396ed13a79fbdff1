"""The system under test of a fault run: its private Redis, the gateway config, replicas, process RSS."""

from __future__ import annotations

import asyncio
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LOCK = "/tmp/llmgw-graph.lock"
APP = "llm-gateway"
PROVIDER_KEY_ENV = "LLMGW_FAULTS_PROVIDER_KEY"


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
