"""Where a c=1 stream's milliseconds go: client TTFT, then span-to-span gaps of the same trace (file tracing).

Start the gateway with file tracing first, e.g.::

    LLMGW_OBSERVABILITY__TRACING__EXPORTER=file LLMGW_OBSERVABILITY__TRACING__SPAN_FILE=/tmp/spans.jsonl \\
      VLLM_CPU_KVCACHE_SPACE=1 python -m app.cli run --config serve_config.cpu.yaml --port 8012
    python -m loadtests.bench.stage_breakdown --url http://127.0.0.1:8012 --spans /tmp/spans.jsonl

Prints medians (p10, p90): ingress start -> ``generate`` start, ``generate`` start -> the pool's ``pool.stream``
start (the dispatch: a Serve call, or a lease's socket write), ``pool.stream`` start -> ``generate`` end (engine
TTFT plus the relay back), and each stage span's own duration. Tracing adds a little to every figure.
"""

from __future__ import annotations

import argparse
import collections
import json
import statistics
import time
from pathlib import Path

import httpx


def _row(name: str, values: list[float]) -> str:
    s = sorted(values)
    p10, p90 = s[len(s) // 10], s[len(s) * 9 // 10]
    return f"{name:58s} n={len(s):4d} p50 {statistics.median(s):7.2f}  p10 {p10:7.2f}  p90 {p90:7.2f}"


def client_ttft(url: str, n: int, warmup: int, gap_s: float) -> list[float]:
    out = []
    with httpx.Client(timeout=60) as client:
        for i in range(n + warmup):
            body = {"model": "small", "max_tokens": 16, "temperature": 1.0, "stream": True, "cache": False,
                    "messages": [{"role": "user", "content": f"Tell me something about topic number {i}"}]}
            time.sleep(gap_s)
            start, first = time.perf_counter(), None
            with client.stream("POST", f"{url}/v1/chat/completions", json=body) as resp:
                for line in resp.iter_lines():
                    if first is None and line.startswith("data: ") and '"content"' in line:
                        first = time.perf_counter() - start
            if i >= warmup and first is not None:
                out.append(first * 1000)
    return out


def gaps(spans: list[dict]) -> dict[str, list[float]]:
    traces: dict[str, dict[str, dict]] = collections.defaultdict(dict)
    for s in spans:
        traces[s["trace_id"]][s["name"]] = s
    rows: dict[str, list[float]] = collections.defaultdict(list)
    for t in traces.values():
        if not {"ingress", "generate", "pool.stream"} <= t.keys():
            continue
        i, g, p = t["ingress"], t["generate"], t["pool.stream"]
        rows["ingress start -> generate start"].append((g["start_ns"] - i["start_ns"]) / 1e6)
        rows["generate start -> pool.stream start (dispatch)"].append((p["start_ns"] - g["start_ns"]) / 1e6)
        rows["pool.stream start -> generate end (engine + relay)"].append((g["end_ns"] - p["start_ns"]) / 1e6)
        rows["generate end -> ingress end"].append((i["end_ns"] - g["end_ns"]) / 1e6)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:8012")
    parser.add_argument("--spans", type=Path, required=True, help="the gateway's tracing span_file")
    parser.add_argument("--requests", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=8)
    parser.add_argument("--gap-s", type=float, default=1.1)
    args = parser.parse_args()
    ttft = client_ttft(args.url, args.requests, args.warmup, args.gap_s)
    time.sleep(3)  # the exporters flush
    spans = [json.loads(line) for line in args.spans.read_text().splitlines() if line.strip()]
    print(_row("client TTFT", ttft))
    for name, values in gaps(spans).items():
        print(_row(name, values))
    leased = [s["attributes"].get("llmgw.pool.leased") for s in spans if s["name"] == "generate"]
    print(f"generate spans on a lease: {sum(1 for v in leased if v)} of {len(leased)}")
    by_name: dict[str, list[float]] = collections.defaultdict(list)
    for s in spans:
        by_name[s["name"]].append(s["duration_ms"])
    for name, values in sorted(by_name.items(), key=lambda kv: -statistics.median(kv[1])):
        print(_row(f"span {name}", values))


if __name__ == "__main__":
    main()
