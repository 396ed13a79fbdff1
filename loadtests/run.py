"""Headless locust runner: run one scenario against a host, write CSV + HTML reports and print a summary.

    python -m loadtests.run SCENARIO --host http://127.0.0.1:8000 --users 20 --duration 60 [--out DIR]

Writes ``DIR/<scenario>_stats.csv`` (and the other locust CSVs), ``DIR/<scenario>.html``,
``DIR/<scenario>_http.json`` (HTTP-only aggregate) and ``DIR/summary.json``; prints requests/s,
p50/p95/p99, error rate, TTFT p50/p99, TPOT p50 and cache hit rate.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCENARIO_DIR = ROOT / "loadtests" / "scenarios"
SCENARIOS = {
    "chat": "chat.py",
    "streaming": "streaming.py",
    "cache-heavy": "cache_heavy.py",
    "tenants": "tenants.py",
    "burst": "burst.py",
    "long-prompts": "long_prompts.py",
    "fault": "fault.py",
}
CUSTOM_TYPES = {"TTFT", "TPOT", "CACHE", "PATH", "RATELIMIT"}


def build_command(scenario: str, host: str, users: int, duration: int, out_dir: Path,
                  spawn_rate: float | None = None) -> list[str]:
    """The locust command line for a headless run writing CSV + HTML into ``out_dir``."""
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}; choose from {', '.join(SCENARIOS)}")
    prefix = out_dir / scenario.replace("-", "_")
    return [sys.executable, "-m", "locust", "-f", str(SCENARIO_DIR / SCENARIOS[scenario]), "--headless",
            "--host", host, "--users", str(users), "--spawn-rate", str(spawn_rate or users),
            "--run-time", f"{duration}s", "--stop-timeout", "10", "--csv", str(prefix), "--html", f"{prefix}.html",
            "--only-summary", "--loglevel", "WARNING", "--exit-code-on-error", "0"]


def _num(value: str) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def read_stats(csv_path: Path) -> list[dict]:
    """Rows of a locust ``*_stats.csv`` (without the Aggregated row)."""
    with csv_path.open(newline="") as f:
        return [row for row in csv.DictReader(f) if row["Name"] != "Aggregated"]


def _weighted(rows: list[dict], column: str) -> float | None:
    """Request-count-weighted mean of a percentile column (exact for one row, an estimate for several)."""
    pairs = [(int(r["Request Count"]), _num(r[column])) for r in rows if _num(r[column]) is not None]
    total = sum(n for n, _ in pairs)
    return round(sum(n * v for n, v in pairs) / total, 2) if total else None


def summarize(prefix: Path) -> dict:
    """Summary figures from a run's CSVs (``prefix_stats.csv``) and HTTP aggregate (``prefix_http.json``)."""
    rows = read_stats(Path(f"{prefix}_stats.csv"))
    http_rows = [r for r in rows if r["Type"] not in CUSTOM_TYPES]
    http_json = Path(f"{prefix}_http.json")
    if http_json.exists():
        http = json.loads(http_json.read_text())
    else:  # fall back to the CSV rows: exact with one HTTP row, weighted estimate with several
        requests = sum(int(r["Request Count"]) for r in http_rows)
        failures = sum(int(r["Failure Count"]) for r in http_rows)
        http = {"requests": requests, "failures": failures,
                "rps": round(sum(_num(r["Requests/s"]) or 0 for r in http_rows), 2),
                "error_rate": round(failures / requests, 4) if requests else 0.0,
                "p50_ms": _weighted(http_rows, "50%"), "p95_ms": _weighted(http_rows, "95%"),
                "p99_ms": _weighted(http_rows, "99%"), "estimated": len(http_rows) > 1}

    def of_type(kind: str) -> list[dict]:
        return [r for r in rows if r["Type"] == kind]

    cache = {r["Name"]: int(r["Request Count"]) for r in of_type("CACHE")}
    cache_total = sum(cache.values())
    hits = sum(n for name, n in cache.items() if name.startswith("hit"))
    return {
        **http,
        "ttft_p50_ms": _weighted(of_type("TTFT"), "50%"), "ttft_p99_ms": _weighted(of_type("TTFT"), "99%"),
        "tpot_p50_ms": _weighted(of_type("TPOT"), "50%"),
        "cache_hit_rate": round(hits / cache_total, 4) if cache_total else None, "cache": cache,
        "paths": {r["Name"]: int(r["Request Count"]) for r in of_type("PATH")},
        "rate_limited": {r["Name"]: int(r["Request Count"]) for r in of_type("RATELIMIT")},
        "per_name": {f"{r['Type']} {r['Name']}": {"requests": int(r["Request Count"]),
                                                   "failures": int(r["Failure Count"]),
                                                   "p50_ms": _num(r["50%"]), "p99_ms": _num(r["99%"])}
                     for r in http_rows},
    }


def _fmt(value, unit: str = "") -> str:
    if value is None:
        return "n/a"
    return f"{value:.1%}" if unit == "%" else f"{value:,.1f}{unit}"


def format_summary(scenario: str, s: dict) -> str:
    """A short human summary of ``summarize`` output."""
    lines = [f"scenario {scenario}: {s['requests']} requests, {_fmt(s['rps'])} req/s, "
             f"error rate {_fmt(s['error_rate'], '%')}",
             f"  latency p50 {_fmt(s['p50_ms'], ' ms')}  p95 {_fmt(s['p95_ms'], ' ms')}  "
             f"p99 {_fmt(s['p99_ms'], ' ms')}",
             f"  TTFT p50 {_fmt(s['ttft_p50_ms'], ' ms')}  p99 {_fmt(s['ttft_p99_ms'], ' ms')}  "
             f"TPOT p50 {_fmt(s['tpot_p50_ms'], ' ms')}",
             f"  cache hit rate {_fmt(s['cache_hit_rate'], '%')}  {s['cache'] or ''}"]
    if s["paths"]:
        lines.append(f"  serving paths {s['paths']}")
    if s["rate_limited"]:
        lines.append(f"  rate limited (429) {s['rate_limited']}")
    return "\n".join(lines)


def run_scenario(scenario: str, host: str, users: int, duration: int, out_dir: Path | None = None,
                 spawn_rate: float | None = None, env: dict[str, str] | None = None) -> tuple[dict, Path]:
    """Run locust headless, return (summary, out_dir). Raises RuntimeError if locust fails."""
    out_dir = Path(out_dir or ROOT / "reports" / "loadtest" / f"{scenario}-{time.strftime('%Y%m%d-%H%M%S')}")
    out_dir.mkdir(parents=True, exist_ok=True)
    prefix = out_dir / scenario.replace("-", "_")
    cmd = build_command(scenario, host, users, duration, out_dir, spawn_rate)
    run_env = {**os.environ, **(env or {}), "LLMGW_LOCUST_SUMMARY": f"{prefix}_http.json",
               "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run(cmd, cwd=ROOT, env=run_env, capture_output=True, text=True, timeout=duration + 120)
    if proc.returncode != 0 or not Path(f"{prefix}_stats.csv").exists():
        raise RuntimeError(f"locust failed ({proc.returncode}): {proc.stderr[-2000:]}")
    summary = summarize(prefix)
    (out_dir / "summary.json").write_text(json.dumps({"scenario": scenario, "host": host, "users": users,
                                                      "duration_s": duration, **summary}, indent=2))
    return summary, out_dir


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scenario", choices=sorted(SCENARIOS))
    parser.add_argument("--host", default="http://127.0.0.1:8000")
    parser.add_argument("--users", type=int, default=10)
    parser.add_argument("--duration", type=int, default=60, help="seconds")
    parser.add_argument("--spawn-rate", type=float, default=None)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    summary, out_dir = run_scenario(args.scenario, args.host, args.users, args.duration, args.out, args.spawn_rate)
    print(format_summary(args.scenario, summary))
    print(f"reports: {out_dir}")


if __name__ == "__main__":
    main()
