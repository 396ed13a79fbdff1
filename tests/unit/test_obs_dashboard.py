"""The Grafana dashboard is valid JSON, covers the issue's panels and only uses metrics that exist."""

from __future__ import annotations

import json
import re
from pathlib import Path

from app.observability import metrics

DASHBOARD = Path(__file__).resolve().parents[2] / "cluster" / "grafana-dashboard.json"


def _exported_names() -> set[str]:
    names: set[str] = set()
    for collector in (v for v in vars(metrics).values() if hasattr(v, "_type") and hasattr(v, "_name")):
        base = collector._name
        suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"], "gauge": [""]}[collector._type]
        names.update(base + s for s in suffixes)
    return names


def test_dashboard_panels_and_metric_names() -> None:
    dash = json.loads(DASHBOARD.read_text())
    panels = [p for p in dash["panels"] if p["type"] != "row"]
    assert len({p["id"] for p in dash["panels"]}) == len(dash["panels"])
    exprs = [t["expr"] for p in panels for t in p["targets"]]
    used = {m for e in exprs for m in re.findall(r"\bllmgw_[a-z_]+", e)}
    assert used and used <= _exported_names(), used - _exported_names()
    titles = " | ".join(p["title"].lower() for p in panels)
    for needle in ("p50/p95/p99", "time to first token", "tokens/s", "cost per hour", "cache hit rate",
                   "route split", "errors/s by provider"):
        assert needle in titles, needle
    assert any("histogram_quantile(0.99" in e for e in exprs)
