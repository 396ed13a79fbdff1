"""A replica that shuts down gracefully drops its live gauges from the node's multiprocess /metrics
(``prometheus_client.multiprocess.mark_process_dead``): pools (via their engine's shutdown, called from the
pool's ``__del__``), the ingress, the fallback and the batch deployments. Counters stay."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.observability import metrics

ROOT = Path(__file__).resolve().parents[2]

REPLICA = """
import sys
from app.observability import metrics
metrics.observe_request(endpoint="chat", route="small", model="m", status=200, latency_s=0.01, stream=False,
                        tenant="t", completion_tokens=2)
metrics.POOL_ONGOING.labels("small").set(3)
metrics.set_breaker_states({"pool:small": 2})
hook = sys.argv[1]
if hook == "engine":
    from app.config import PoolConfig
    from app.engines.echo_engine import EchoEngine
    EchoEngine(PoolConfig(name="small", engine={"model": "m"})).shutdown()
elif hook != "none":
    import importlib, inspect
    module, cls = hook.split(":")
    klass = getattr(importlib.import_module(module), cls).func_or_class
    # the class's own (sync) __del__, under @serve.ingress's async wrapper that awaits/calls it
    user = next(c for c in klass.__mro__
                if "__del__" in vars(c) and not inspect.iscoroutinefunction(vars(c)["__del__"]))
    user.__del__(object.__new__(user))  # what Serve calls on a graceful replica shutdown
"""


def _samples() -> dict:
    body, _ = metrics.render_metrics()
    out = {}
    for line in body.decode().splitlines():
        if line and not line.startswith("#"):
            key, value = line.rsplit(" ", 1)
            out[key] = float(value)
    return out


@pytest.mark.parametrize("hook", ["engine", "deployments.ingress:Ingress", "deployments.fallback:FallbackDeployment",
                                  "deployments.batch:BatchWorkers"])
def test_graceful_shutdown_drops_live_gauges(hook: str, tmp_path, monkeypatch) -> None:
    prom = metrics.prepare_multiprocess_dir(tmp_path / "prom")
    env = {**os.environ, "PYTHONPATH": str(ROOT), metrics.MULTIPROC_ENV: str(prom)}
    running = _running_replica(env)  # still serving: its live gauges stay
    try:
        subprocess.run([sys.executable, "-c", REPLICA, hook], env=env, cwd=ROOT, check=True, timeout=120)  # stopped
        monkeypatch.setenv(metrics.MULTIPROC_ENV, str(prom))
        samples = _samples()
    finally:
        running.kill()
        running.wait()
    assert samples['llmgw_pool_ongoing_requests{pool="small"}'] == 3  # only the replica that did not stop
    completed = [v for k, v in samples.items() if k.startswith("llmgw_requests_total{")]
    assert sum(completed) == 2  # counters of both replicas stay


def _running_replica(env: dict) -> subprocess.Popen:
    """A replica process that set its gauges and keeps running (prints ``ready`` first)."""
    code = REPLICA + "\nprint('ready', flush=True)\nimport time\ntime.sleep(600)"
    proc = subprocess.Popen([sys.executable, "-c", code, "none"], env=env, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    return proc


def test_a_killed_replica_leaves_no_in_flight_behind(tmp_path, monkeypatch) -> None:
    """A replica killed mid-request (ray.kill, OOM, crash: no shutdown hook) left its in-flight gauge on /metrics for
    good (the vLLM fault run read 13 requests in flight on pool-small long after the killed replica was gone)."""
    prom = metrics.prepare_multiprocess_dir(tmp_path / "prom")
    env = {**os.environ, "PYTHONPATH": str(ROOT), metrics.MULTIPROC_ENV: str(prom)}
    alive, killed = _running_replica(env), _running_replica(env)
    killed.kill()
    killed.wait()
    monkeypatch.setenv(metrics.MULTIPROC_ENV, str(prom))
    try:
        samples = _samples()
        assert samples['llmgw_pool_ongoing_requests{pool="small"}'] == 3  # the live replica's 3, not 6
        assert samples['llmgw_breaker_state{target="pool:small"}'] == 2
        assert sum(v for k, v in samples.items() if k.startswith("llmgw_requests_total{")) == 2  # counters stay
        assert metrics.reap_dead_processes(str(prom)) == []  # the render reaped it; the live one is kept
    finally:
        alive.kill()
        alive.wait()
    assert metrics.reap_dead_processes(str(prom)) == [alive.pid]
