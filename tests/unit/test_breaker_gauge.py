"""The breaker gauge holds every breaker as it changes: the ingress' pool breakers and the fallback
deployment's provider breakers (issue 14 #7), each process writing its own (merged by /metrics)."""

from __future__ import annotations

import os
import subprocess
import sys

from app.observability import metrics
from app.resilience.breaker import BreakerRegistry
from app.resilience.settings import BreakerConfig
from tests.unit.test_obs_metrics import ROOT, _render, _value

GAUGE = "llmgw_breaker_state"


def test_every_transition_reaches_the_gauge(monkeypatch) -> None:
    monkeypatch.delenv(metrics.MULTIPROC_ENV, raising=False)
    now = [0.0]
    reg = BreakerRegistry(BreakerConfig(failure_threshold=2, window_s=10, cooldown_s=5), clock=lambda: now[0],
                          on_change=metrics.breaker_changed)
    b = reg.get("pool:gauge-test")
    assert _value(_render(), GAUGE, target="pool:gauge-test") == 0  # there from its first use, closed
    b.record_failure()
    b.record_failure()
    assert _value(_render(), GAUGE, target="pool:gauge-test") == 2
    now[0] = 6.0
    assert reg.states()["pool:gauge-test"] == "half_open" and _value(_render(), GAUGE, target="pool:gauge-test") == 1
    b.record_success()
    assert _value(_render(), GAUGE, target="pool:gauge-test") == 0


FALLBACK = """
import asyncio, sys
from deployments.fallback import FallbackDeployment
cls = FallbackDeployment.func_or_class
dep = cls({"providers": [{"name": "p-one", "kind": "openai", "base_url": "http://127.0.0.1:9/v1", "model": "m",
                          "api_key_env": "NO_SUCH_KEY"}], "breaker": {"failure_threshold": 1, "cooldown_s": 60}})
if sys.argv[1] == "open":
    dep.breakers.get("provider:p-one").record_failure()
asyncio.run(dep.check_health())
print("ready", flush=True)
sys.stdin.readline()  # alive (its live gauges count) until the test has read /metrics
"""


def _replica(env: dict, state: str) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", FALLBACK, state], env=env, cwd=ROOT, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert proc.stdout.readline().strip() == "ready"
    return proc


def test_provider_breakers_of_the_fallback_process_show_in_the_merged_gauge(tmp_path, monkeypatch) -> None:
    prom_dir = metrics.prepare_multiprocess_dir(tmp_path / "prom")
    env = {**os.environ, "PYTHONPATH": str(ROOT), metrics.MULTIPROC_ENV: str(prom_dir)}
    monkeypatch.setenv(metrics.MULTIPROC_ENV, str(prom_dir))
    replicas = [_replica(env, "closed")]
    try:
        assert _value(_render(), GAUGE, target="provider:p-one") == 0
        assert (GAUGE, (("target", "provider:p-one"),)) in _render()  # before: provider breakers never appeared
        replicas.append(_replica(env, "open"))
        assert _value(_render(), GAUGE, target="provider:p-one") == 2  # the worst live replica: open
    finally:
        for proc in replicas:
            proc.communicate("\n", timeout=60)
