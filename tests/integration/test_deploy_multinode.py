"""A simulated multi-node cluster on this machine: a head carrying the CPU services' resource and two
worker nodes carrying `pool_small` / `pool_large` (what the KubeRay GPU groups declare). Each pool's
replicas land only on its node; killing the small pool's node sends its traffic down the fallback
chain (answered by the large pool) and it comes back once a node with `pool_small` rejoins. Deployed as
committed: each pool its own Serve application."""

from __future__ import annotations

import time

import pytest

from app.deploy.bind_args import pool_app_name, split_pool_apps
from app.deploy.placement import SERVICE_SECTIONS, SERVICES_RESOURCE, pool_resource
from app.deploy.profiles import load_profile
from app.deploy.render import serve_config
from loadtests.local_cluster import LocalCluster, ask, free_port

pytestmark = pytest.mark.slow


def _pinned_cpu_config(port: int) -> dict:
    """The CPU profile with the cluster profile's pinning: pools on their pool_* node, services on cpu_services."""
    config = serve_config(load_profile("cpu"), http_port=port)
    args = config["applications"][0]["args"]
    for pool in args["pools"]:
        pool["ray_actor_options"]["resources"] = {pool_resource(pool["name"]): 1}
    for section in SERVICE_SECTIONS:
        args.setdefault(section, {}).setdefault("ray_actor_options", {"num_cpus": 0})["resources"] = {
            SERVICES_RESOURCE: 1}
    args["fallback"].update(pool_first_chunk_timeout_s=4, breaker={"failure_threshold": 2, "cooldown_s": 5},
                            retry={"attempts": 2, "base_delay_s": 0.05, "max_delay_s": 0.5, "deadline_s": 20})
    return split_pool_apps(config)


def _stream(url: str, i: int) -> tuple[int, str]:
    resp = ask(url, model="small", content=f"multinode {i}", max_tokens=8, stream=True, timeout=60)
    done = resp.text.rstrip().endswith("data: [DONE]")
    return (resp.status_code if done else -1), resp.headers.get("x-llmgw-path", "")


def _until(url: str, wanted: str, timeout: float) -> list[tuple[int, str]]:
    """Stream requests for model small until one is answered by ``wanted``; return every outcome."""
    seen, deadline, i = [], time.time() + timeout, 0
    while time.time() < deadline:
        seen.append(_stream(url, i))
        i += 1
        if seen[-1] == (200, wanted):
            return seen
        time.sleep(0.5)
    raise AssertionError(f"never answered by {wanted} in {timeout}s: {seen[-10:]}")


def test_pools_on_their_nodes_and_fallback_when_a_pool_node_dies() -> None:
    from app.cli import ensure_tiny_models

    ensure_tiny_models()
    port = free_port()
    cluster = LocalCluster()
    try:
        cluster.start_head(num_cpus=2, resources={SERVICES_RESOURCE: 100})
        small_node = cluster.add_node("small", num_cpus=1, resources={pool_resource("small"): 1})
        large_node = cluster.add_node("large", num_cpus=1, resources={pool_resource("large"): 1})
        head_node = next(n["node_id"] for n in cluster.list_nodes() if n["is_head_node"])
        config = _pinned_cpu_config(port)
        cluster.deploy(config)
        for app in config["applications"]:
            cluster.wait_healthy(app=app["name"], timeout=480)

        assert cluster.replica_nodes("pool-small", app=pool_app_name("llm-gateway", "small")) == {small_node}
        assert cluster.replica_nodes("pool-large", app=pool_app_name("llm-gateway", "large")) == {large_node}
        for deployment in ("Ingress", "Router", "CacheDeployment"):
            assert cluster.replica_nodes(deployment) == {head_node}, deployment

        url = f"http://127.0.0.1:{port}"
        assert _stream(url, -1) == (200, "pool:small")
        assert ask(url, model="large").headers["x-llmgw-path"] == "pool:large"

        cluster.stop_node("small")  # the small pool's only node goes away
        assert {n["node_id"]: n["state"] for n in cluster.list_nodes()}[small_node] == "DEAD"
        during = [_stream(url, i) for i in range(6)]
        assert all(status == 200 for status, _ in during), during  # nothing lost: the chain answers
        assert {path for _, path in during} == {"pool:large"}, during

        cluster.add_node("small-2", num_cpus=1, resources={pool_resource("small"): 1})
        cluster.wait_healthy(app=pool_app_name("llm-gateway", "small"), timeout=300)
        after = _until(url, "pool:small", timeout=90)
        assert all(status == 200 for status, _ in after), after
    finally:
        leftovers = cluster.shutdown(describe=True)
        cluster.cleanup()
    assert leftovers == [], f"processes outlived their node: {leftovers}"
