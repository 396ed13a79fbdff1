"""Tokens/s and latency through the whole gateway vs the bare vLLM OpenAI server, same tiny model,
same concurrency, measured side by side in one run (issue: foundation benchmark).

    python -m loadtests.bench.gateway_vs_vllm [--concurrency 16] [--requests 64] [--max-tokens 128]

Starts the bare server (`python -m vllm.entrypoints.openai.api_server`) on 127.0.0.1:8100, measures,
stops it; then starts the gateway (serve_config.cpu.yaml, port 8012) and measures the same load,
streaming and non-streaming. Prints a table and ratios; writes .cache/bench/gateway_vs_vllm.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from loadtests.bench.openai_load import run_load

ROOT = Path(__file__).resolve().parents[2]
MODEL_DIR = ROOT / ".cache/models/tiny-small"


def _wait(url: str, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if httpx.get(f"{url}/v1/models", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise RuntimeError(f"{url} did not come up")


def measure(url: str, model: str, args) -> dict:
    out = {}
    for stream in (True, False):
        res = asyncio.run(run_load(url, model, args.concurrency, args.requests, args.max_tokens, stream))
        out["stream" if stream else "unary"] = res.row()
    return out


def bare_vllm(args) -> dict:
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1"}
    cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(MODEL_DIR),
           "--served-model-name", "tiny-small", "--host", "127.0.0.1", "--port", "8100", "--enforce-eager",
           "--max-model-len", "2048", "--dtype", "bfloat16", "--max-num-seqs", "64"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait("http://127.0.0.1:8100")
        return measure("http://127.0.0.1:8100", "tiny-small", args)
    finally:
        proc.terminate()
        proc.wait(30)


def gateway(args) -> dict:
    cmd = [sys.executable, "-m", "app.cli", "run", "--config", "serve_config.cpu.yaml", "--port", "8012"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait("http://127.0.0.1:8012", 400)
        return measure("http://127.0.0.1:8012", "small", args)
    finally:
        proc.terminate()
        proc.wait(60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--requests", type=int, default=64)
    parser.add_argument("--max-tokens", type=int, default=128)
    args = parser.parse_args()
    if not MODEL_DIR.exists():
        sys.exit("tiny model missing: run `make models` first")
    results = {"bare_vllm": bare_vllm(args), "gateway": gateway(args), "config": vars(args)}
    print(f"{'mode':8} {'target':10} {'tok/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'TTFT p50':>9}")
    for mode in ("stream", "unary"):
        for target in ("bare_vllm", "gateway"):
            r = results[target][mode]
            print(f"{mode:8} {target:10} {r['tokens_per_s']:8.0f} {r['p50_ms']:8.0f} {r['p99_ms']:8.0f} "
                  f"{r['ttft_p50_ms']:9.0f}")
        ratio = results["gateway"][mode]["tokens_per_s"] / results["bare_vllm"][mode]["tokens_per_s"]
        results[f"ratio_{mode}_tokens_per_s"] = round(ratio, 3)
        print(f"{mode}: gateway / bare vLLM tokens/s = {ratio:.2f}")
    out = ROOT / ".cache/bench/gateway_vs_vllm.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
