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
    subprocess.run([sys.executable, "-c", REPLICA, "none"], env=env, cwd=ROOT, check=True, timeout=120)  # killed
    subprocess.run([sys.executable, "-c", REPLICA, hook], env=env, cwd=ROOT, check=True, timeout=120)  # stopped
    monkeypatch.setenv(metrics.MULTIPROC_ENV, str(prom))
    samples = _samples()
    assert samples['llmgw_pool_ongoing_requests{pool="small"}'] == 3  # only the replica that did not stop
    completed = [v for k, v in samples.items() if k.startswith("llmgw_requests_total{")]
    assert sum(completed) == 2  # counters of both replicas stay
