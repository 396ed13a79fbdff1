"""Fault paths through the real gateway (runs last: it kills pool replicas, then waits for recovery).

A pool replica killed during load loses no request; with both pools down the external provider
answers; with the provider failing too, a stale cached answer (marked degraded) and then a 503 with
Retry-After. Breaker states are visible in /readyz."""

from __future__ import annotations

import concurrent.futures as cf
import time

import httpx
import pytest
import ray
from ray import serve
from ray.serve.schema import ReplicaState

pytestmark = pytest.mark.gateway
APP = "llm-gateway"


def _replica_actors(pool: str) -> list[str]:
    return [a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
            if a["namespace"] == "serve" and a["name"].startswith(f"SERVE_REPLICA::{APP}#pool-{pool}#")]


def _kill(pool: str) -> int:
    names = _replica_actors(pool)
    for name in names:
        ray.kill(ray.get_actor(name, namespace="serve"), no_restart=False)
    return len(names)


def _keep_pools_down() -> None:
    """Kill both pools' replicas again: a restarted replica (about 30 s here) must not answer a step."""
    _kill("small")
    _kill("large")


def _wait_running(pool: str, timeout: float = 240) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        states = serve.status().applications[APP].deployments[f"pool-{pool}"].replica_states
        if states.get(ReplicaState.RUNNING, 0) >= 1 and sum(states.values()) == states.get(ReplicaState.RUNNING):
            return
        time.sleep(1)
    raise AssertionError(f"pool {pool} did not recover")


def _sse_text(resp: httpx.Response) -> str:
    import json

    chunks = [json.loads(line[6:]) for line in resp.text.splitlines() if line.startswith("data: {")]
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c.get("choices"))


def _ask(url: str, i: int, stream: bool) -> tuple[int, str, str]:
    body = {"model": "small", "messages": [{"role": "user", "content": f"load {i}"}], "max_tokens": 48,
            "stream": stream, "cache": False}
    with httpx.Client(timeout=60) as c:
        resp = c.post(f"{url}/v1/chat/completions", json=body)
        text = resp.text
    ok = resp.status_code == 200 and (not stream or text.rstrip().endswith("[DONE]"))
    return (200 if ok else resp.status_code), resp.headers.get("x-llmgw-path", ""), text


def test_killing_a_pool_replica_under_load_loses_no_request(gateway_url: str) -> None:
    with cf.ThreadPoolExecutor(16) as pool:
        futures = [pool.submit(_ask, gateway_url, i, i % 2 == 0) for i in range(48)]
        time.sleep(1.0)
        assert _kill("small") == 1
        results = [f.result() for f in futures]
    assert all(status == 200 for status, _, _ in results), [r[:2] for r in results if r[0] != 200]
    paths = {path for _, path, _ in results}
    assert paths & {"pool:large", "providers"}, paths  # some were answered by the next step of the chain
    _wait_running("small")


def test_both_pools_down_then_provider_then_stale_cache_then_503(gateway_url: str, fake_provider) -> None:
    client = httpx.Client(base_url=gateway_url, timeout=60)
    cached_q = {"model": "small", "messages": [{"role": "user", "content": "What is the uptime SLA of plan 1?"}],
                "max_tokens": 8, "temperature": 0}
    assert client.post("/v1/chat/completions", json=cached_q).status_code == 200  # now in the cache
    try:
        _keep_pools_down()
        # Streams: a pool without a live replica gives no first token in time, so the chain moves on.
        fresh = {"model": "small", "messages": [{"role": "user", "content": "A brand new question?"}],
                 "max_tokens": 8, "cache": False, "stream": True}
        resp = client.post("/v1/chat/completions", json=fresh)
        assert resp.status_code == 200 and resp.headers["x-llmgw-path"] == "providers"
        assert _sse_text(resp) == "Hello from the fake provider."
        assert fake_provider.requests[-1]["headers"]["authorization"].startswith("Bearer sk-fake")
        fake_provider.mode = "500"
        _keep_pools_down()
        # Similar but not the same question (the verifier vetoes it): only a degraded answer may use it.
        similar = {**cached_q, "stream": True,
                   "messages": [{"role": "user", "content": "What is the uptime SLA of plan 2?"}]}
        stale = client.post("/v1/chat/completions", json=similar)
        assert stale.status_code == 200 and stale.headers["x-llmgw-path"] == "stale_cache"
        assert stale.headers["x-llmgw-degraded"] == "stale-cache" and stale.headers["x-llmgw-cache"] == "stale"
        _keep_pools_down()
        gone = client.post("/v1/chat/completions", json=fresh)
        assert gone.status_code == 503 and gone.headers["retry-after"] == "7"
        err = gone.json()["error"]
        assert err["type"] == "service_unavailable" and "retry" in err["message"].lower()
        assert "sk-fake" not in gone.text
        ready = client.get("/readyz").json()
        assert set(ready["breakers"]) >= {"pool:small", "pool:large", "provider:fake-openai"}
    finally:
        fake_provider.mode = "ok"
        _wait_running("small")
        _wait_running("large")
    # Recovered: once the ingress sees the new replica (and the breaker's half-open probe passes), the pool answers.
    paths = []
    deadline = time.time() + 90
    while time.time() < deadline and "pool:small" not in paths:
        paths.append(client.post("/v1/chat/completions", json={**cached_q, "cache": False}).headers["x-llmgw-path"])
        time.sleep(1)
    assert paths[-1] == "pool:small", paths
