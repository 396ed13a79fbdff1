"""Tokens/s, TTFT and front-end CPU through the whole gateway vs the bare vLLM OpenAI server vs Ray Serve
LLM's ``build_openai_app``, same tiny model, same load, measured side by side in one run (issue 12).

    python -m loadtests.bench.gateway_vs_vllm [--concurrency 1,16] [--requests 64] [--max-tokens 128]
        [--targets bare_vllm,serve_llm,gateway] [--gateway-config serve_config.cpu.yaml] [--warmup 32]

A target may carry environment variables of its own after ``+`` (as in ``ab.py``'s trees), so two settings
of one target are measured side by side in one run, e.g.
``--targets bare_vllm,gateway,gateway+LLMGW_INGRESS__STREAM_RELAY=false``.

Each target is started in turn on loopback (bare vLLM on 8100, Serve LLM on 8014, the gateway on 8012),
warmed up alike (``--warmup`` requests per mode, not measured), measured streaming and unary at every
concurrency, and stopped. CPU seconds of every process of the
target (found by process tree) are read from /proc around each load run and split into the engine
(``VLLM::EngineCore`` and its ``VLLM::Worker`` processes) and the front end (everything else: the
vLLM API server, or the Serve proxy, ingress, router, cache and the pool replicas' own Python);
"front-end CPU ms per token" is the deciding figure on this machine, where every CPU the front end
spends is taken from the engine.
Prints a table with ratios to bare vLLM and writes .cache/bench/gateway_vs_vllm.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from loadtests.bench.env_spec import split_env
from loadtests.bench.openai_load import run_load
from loadtests.bench.proc_cpu import cpu_s, stat_fields

ROOT = Path(__file__).resolve().parents[2]
MODEL_DIR = ROOT / ".cache/models/tiny-small"
VLLM_ARGS = ["--enforce-eager", "--max-model-len", "2048", "--dtype", "float32", "--max-num-seqs", "64"]


def _wait(url: str, proc: subprocess.Popen, timeout: float = 400, path: str = "/v1/models") -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: the server exited ({proc.returncode})")
        try:
            if httpx.get(f"{url}{path}", timeout=30).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise RuntimeError(f"{url} did not come up")


def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            ppid = int(stat_fields(pid)[1])
        except (OSError, IndexError, ValueError):
            continue
        kids.setdefault(ppid, []).append(int(pid))
    return kids


def cpu_by_process(root: int) -> dict[str, float]:
    """CPU seconds so far of ``root`` and every descendant, keyed by a short process label."""
    out: dict[str, float] = {}
    for pid in (root, *_descendants(root)):
        try:
            name = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
            used = cpu_s(pid)
        except (OSError, IndexError):
            continue
        if used is None:
            continue
        label = name.removeprefix("ray::").split(".")[0].replace("ServeReplica:", "").split(" ")[0]
        label = Path(label).name if label.startswith("/") else label
        out[label] = out.get(label, 0.0) + used
    return out


def _is_engine(label: str) -> bool:
    """vLLM's engine core and its executor workers (process titles VLLM::EngineCore, VLLM::Worker...)."""
    return "EngineCore" in label or "Worker" in label


def measure(url: str, model: str, args, root: int) -> dict:
    out = {}
    if args.warmup:  # the same for every target: first requests pay one-off costs (lazy imports, new shapes)
        for stream in (True, False):
            asyncio.run(run_load(url, model, 4, args.warmup, args.max_tokens, stream))
    for conc in args.concurrency:
        for stream in (True, False):
            before = cpu_by_process(root)
            res = asyncio.run(run_load(url, model, conc, args.requests, args.max_tokens, stream))
            after = cpu_by_process(root)
            row = res.row()
            spent = {k: after[k] - before.get(k, 0.0) for k in after}
            engine = sum(v for k, v in spent.items() if _is_engine(k))
            front = sum(v for k, v in spent.items() if not _is_engine(k))
            tokens = max(1, res.tokens)
            row.update(front_cpu_ms_per_token=round(front * 1000 / tokens, 3),
                       engine_cpu_ms_per_token=round(engine * 1000 / tokens, 3),
                       cpu_ms_per_request={k: round(v * 1000 / max(1, res.requests), 2)
                                           for k, v in sorted(spent.items(), key=lambda kv: -kv[1]) if v > 0.005})
            out[f"{'stream' if stream else 'unary'}@{conc}"] = row
            print(f"    {'stream' if stream else 'unary'} c={conc}: {row['tokens_per_s']:.0f} tok/s, TTFT p50 "
                  f"{row['ttft_p50_ms']} ms, front-end CPU {row['front_cpu_ms_per_token']} ms/token, "
                  f"errors {row['errors']}", flush=True)
    return out


def _start(cmd: list[str], env: dict, log: str) -> subprocess.Popen:
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT,
                            start_new_session=True)


def _descendants(root: int) -> list[int]:
    """Every process below ``root`` now (also those in process groups or sessions of their own)."""
    kids, out, todo = _children(), [], [root]
    while todo:
        pid = todo.pop()
        out += kids.get(pid, [])
        todo += kids.get(pid, [])
    return out


def _stop(proc: subprocess.Popen, grace: float = 60) -> None:
    """Stop a target and everything it started: Ray's workers run in process groups of their own, and the vLLM
    engines under them (titles ``VLLM::EngineCore``/``VLLM::Worker``) outlive both the group kill and
    ``ray stop``; left running, they keep spinning on the cores under whatever runs next."""
    if proc.poll() is None:
        tree = _descendants(proc.pid)
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        time.sleep(2)
        for pid in tree:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)


def run_target(spec: str, args) -> dict:
    name, extra = split_env(spec)
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", **extra}
    log = str(ROOT / f".cache/bench/gateway_vs_vllm-{spec.replace('=', '_')}.log")
    if name == "bare_vllm":
        cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(MODEL_DIR),
               "--served-model-name", "tiny-small", "--host", "127.0.0.1", "--port", "8100", *VLLM_ARGS]
        url, model = "http://127.0.0.1:8100", "tiny-small"
    elif name == "serve_llm":
        cmd = [sys.executable, "-m", "loadtests.bench.serve_llm_app", "--port", "8014"]
        url, model = "http://127.0.0.1:8014", "tiny-small"
    else:
        cmd = [sys.executable, "-m", "app.cli", "run", "--config", str(args.gateway_config), "--port", "8012"]
        url, model = "http://127.0.0.1:8012", "small"
    proc = _start(cmd, env, log)
    try:
        _wait(url, proc)
        if name == "gateway":  # both pools warm
            _wait(url, proc, 240, "/readyz")
        print(f"[{spec}] {url}", flush=True)
        return measure(url, model, args, proc.pid)
    finally:
        _stop(proc)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--concurrency", default="1,16")
    parser.add_argument("--requests", type=int, default=64)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--warmup", type=int, default=32,
                        help="requests per mode (stream, unary; concurrency 4) sent to each target before measuring")
    parser.add_argument("--targets", default="bare_vllm,serve_llm,gateway")
    parser.add_argument("--gateway-config", type=Path, default=ROOT / "serve_config.cpu.yaml")
    args = parser.parse_args()
    args.concurrency = [int(c) for c in args.concurrency.split(",")]
    if not MODEL_DIR.exists():
        sys.exit("tiny model missing: run `make models` first")
    (ROOT / ".cache/bench").mkdir(parents=True, exist_ok=True)
    targets = args.targets.split(",")
    results: dict = {"config": {**vars(args), "gateway_config": str(args.gateway_config)},
                     "load_avg_start": os.getloadavg()}
    out = ROOT / ".cache/bench/gateway_vs_vllm.json"
    for t in targets:
        try:
            results[t] = run_target(t, args)
        except Exception as exc:  # keep the other columns: one target that fails is reported, not fatal
            print(f"[{t}] failed: {type(exc).__name__}: {exc}", flush=True)
            results[t + "_error"] = f"{type(exc).__name__}: {exc}"
        out.write_text(json.dumps(results, indent=2))
    targets = [t for t in targets if t in results]
    width = max(10, *(len(t) for t in targets))
    print(f"\n{'mode':10} {'target':{width}} {'tok/s':>7} {'x bare':>7} {'p50 ms':>7} {'TTFT p50':>9} "
          f"{'FE CPU ms/tok':>14}")
    for mode in results[targets[0]]:
        for t in targets:
            r, base = results[t][mode], results.get("bare_vllm", {}).get(mode)
            ratio = r["tokens_per_s"] / base["tokens_per_s"] if base and base["tokens_per_s"] else float("nan")
            print(f"{mode:10} {t:{width}} {r['tokens_per_s']:7.0f} {ratio:7.2f} {r['p50_ms']:7.0f} "
                  f"{r['ttft_p50_ms']:9.1f} {r['front_cpu_ms_per_token']:14.3f}")
    results["load_avg_end"] = os.getloadavg()
    out.write_text(json.dumps(results, indent=2))
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
