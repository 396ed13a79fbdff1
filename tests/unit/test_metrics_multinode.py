"""The multi-node scrape design (docs/deploy.md section 6), run with real processes: replica processes on
two "nodes" write into their node's PROMETHEUS_MULTIPROC_DIR, each node's exporter
(``python -m app.observability.node_exporter``) serves its share, and the Grafana dashboard's aggregations
over both scrapes see every replica of every node; a gracefully stopped replica's live gauge is gone."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from app.observability.metrics import prepare_multiprocess_dir

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "cluster" / "grafana-dashboard.json"

INGRESS = """
from app.observability import metrics
metrics.observe_request(endpoint="/v1/chat/completions", route="small", model="tiny-small", status=200,
                        latency_s=0.1, stream=False, tenant="acme")
metrics.set_breaker_states({"pool:small": _BREAKER_})
"""
POOL = """
from app.observability import metrics
metrics.POOL_ONGOING.labels("small").set(_ONGOING_)
if _STOP_:
    metrics.mark_process_dead()  # what a pool replica's graceful shutdown does (its engine's shutdown)
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


_RUNNING: list[subprocess.Popen] = []  # replica stand-ins keep running: a dead process's live gauges are reaped


def _replica(node_dir: Path, code: str, **values: object) -> None:
    for name, value in values.items():
        code = code.replace(f"_{name}_", repr(value))
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(node_dir), "PYTHONPATH": str(ROOT)}
    code += "\nprint('ready', flush=True)\nimport time\ntime.sleep(600)"
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    _RUNNING.append(proc)
    assert proc.stdout.readline().strip() == "ready"


@pytest.fixture()
def exporters(tmp_path: Path) -> Iterator[tuple[dict[str, Path], dict[str, str]]]:
    dirs = {node: prepare_multiprocess_dir(tmp_path / node) for node in ("cpu-node", "gpu-node")}
    procs, urls = [], {}
    for node, path in dirs.items():
        port = free_port()
        env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(path), "PYTHONPATH": str(ROOT)}
        procs.append(subprocess.Popen([sys.executable, "-m", "app.observability.node_exporter", "--port", str(port),
                                       "--host", "127.0.0.1"], env=env, cwd=ROOT))
        urls[node] = f"http://127.0.0.1:{port}/metrics"
    try:
        yield dirs, urls
    finally:
        for proc in procs + _RUNNING:
            proc.terminate()
            proc.wait(10)
        _RUNNING.clear()


def _scrape(url: str) -> list:
    deadline = time.time() + 30
    while True:
        try:
            return list(text_string_to_metric_families(httpx.get(url, timeout=5).text))
        except httpx.TransportError:
            if time.time() > deadline:
                raise
            time.sleep(0.1)


def _sum(scrapes: list[list], sample_name: str, **labels: str) -> float:
    """`sum(series{labels})` over every target, as Prometheus evaluates the dashboard's panels."""
    return sum(s.value for families in scrapes for f in families for s in f.samples
               if s.name == sample_name and all(s.labels.get(k) == v for k, v in labels.items()))


def _max(scrapes: list[list], sample_name: str, **labels: str) -> float:
    return max(s.value for families in scrapes for f in families for s in f.samples
               if s.name == sample_name and all(s.labels.get(k) == v for k, v in labels.items()))


def test_every_replica_on_every_node_is_seen_and_a_stopped_one_leaves(exporters) -> None:
    dirs, urls = exporters
    for breaker in (0, 2):  # two ingress replicas on the CPU node; one sees the pool's breaker open
        _replica(dirs["cpu-node"], INGRESS, BREAKER=breaker)
    for ongoing, stop in ((3, False), (4, False), (5, True)):  # three pool replicas, the last one stopped
        _replica(dirs["gpu-node"], POOL, ONGOING=ongoing, STOP=stop)
    cpu, gpu = _scrape(urls["cpu-node"]), _scrape(urls["gpu-node"])
    assert _sum([cpu], "llmgw_requests_total", route="small") == 2  # both ingress replicas, one node's exporter
    assert _sum([gpu], "llmgw_requests_total") == 0 and _sum([cpu], "llmgw_pool_ongoing_requests") == 0
    both = [cpu, gpu]
    # the dashboard's expressions: sum by (route) (rate(llmgw_requests_total)), sum by (pool) (...ongoing),
    # max by (target) (llmgw_breaker_state): each needs every node's exporter, none is complete alone
    assert _sum(both, "llmgw_requests_total", route="small") == 2
    assert _sum(both, "llmgw_pool_ongoing_requests", pool="small") == 3 + 4  # the stopped replica's 5 is gone
    assert _max(both, "llmgw_breaker_state", target="pool:small") == 2  # the worst replica


def test_every_dashboard_panel_aggregates_across_targets() -> None:
    """Series from many nodes' exporters combine only under an aggregation; a bare selector would draw one
    line per pod (and a `rate` of a single instance would hide the others)."""
    exprs = [t["expr"] for p in json.loads(DASHBOARD.read_text())["panels"] for t in p.get("targets", [])]
    assert exprs
    aggregated = re.compile(r"^\s*(sum|max)\b|^\s*histogram_quantile\([\d.]+,\s*sum\b")
    assert [e for e in exprs if not aggregated.match(e)] == []
    assert not [e for e in exprs if re.search(r"\b(instance|pod|node)\s*=", e)]  # no single-target pinning
