"""TTFT at concurrency 1, bare vLLM vs the gateway, both up at once and asked in turn (issue 12).

    python -m loadtests.bench.paired_ttft [--requests 120] [--warmup 16] [--gap-s 1.1]
        [--gateway-config serve_config.cpu.yaml] [--env KEY=VALUE ...]

Run one after the other, the two targets see different machines: on 2 shared cores the CPU engine has
phases in which a request's every chunk (the role chunk too) reaches the client only at its end, so one
run's TTFT p50 can read 7 ms and the next 150 ms for the bare server alone. Here both servers run side by
side and each prompt goes to both, in alternating order, one request at a time; the figure is the median of
the per-prompt differences (gateway − bare) with a bootstrap 95 % interval, next to each side's p50 and the
share of its requests slower than 50 ms (the stall phases, counted, not hidden). ``--gap-s`` (default 1.1) is
waited before every request: vLLM's CPU worker busy-waits (``sched_yield``) for 1 s after each step it reads
(``SpinCondition.busy_loop_s`` in ``shm_broadcast.py``), and one engine spinning while the other serves took
~1 s off the other's TTFT in every second pair here; with the gap each request starts with both engines
idle. ``--env`` sets a variable for both servers alike (an engine setting such as ``VLLM_CPU_OMP_THREADS_BIND``,
which both vLLM processes read, keeps the comparison about the gateway). TTFT = time to the first chunk
with content, as in ``openai_load``. Writes .cache/bench/paired_ttft.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np

from loadtests.bench.env_spec import env_pairs
from loadtests.bench.gateway_vs_vllm import MODEL_DIR, ROOT, VLLM_ARGS, _start, _stop, _wait

BARE = ("bare_vllm", "http://127.0.0.1:8100", "tiny-small")
GATEWAY = ("gateway", "http://127.0.0.1:8012", "small")


@contextlib.contextmanager
def both_servers(extra_env: dict[str, str], gateway_config: Path, log_prefix: str) -> Iterator[dict[str, int]]:
    """Bare vLLM (8100) and the gateway (8012) up at once, both pools ready; yields their root pids."""
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", **extra_env}
    bare = _start([sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(MODEL_DIR),
                   "--served-model-name", "tiny-small", "--host", "127.0.0.1", "--port", "8100", *VLLM_ARGS],
                  env, str(ROOT / f".cache/bench/{log_prefix}-bare.log"))
    gateway = _start([sys.executable, "-m", "app.cli", "run", "--config", str(gateway_config), "--port", "8012"],
                     env, str(ROOT / f".cache/bench/{log_prefix}-gateway.log"))
    try:
        _wait(BARE[1], bare)
        _wait(GATEWAY[1], gateway)
        _wait(GATEWAY[1], gateway, 240, "/readyz")
        yield {BARE[0]: bare.pid, GATEWAY[0]: gateway.pid}
    finally:
        _stop(gateway)
        _stop(bare)


def ttft_ms(client: httpx.Client, url: str, model: str, i: int, max_tokens: int) -> float | None:
    body = {"model": model, "max_tokens": max_tokens, "temperature": 1.0, "stream": True, "cache": False,
            "messages": [{"role": "user", "content": f"Tell me a long story, number {i}."}]}
    t0 = time.perf_counter()
    first = None
    with client.stream("POST", f"{url}/v1/chat/completions", json=body) as resp:
        if resp.status_code != 200:
            return None
        for line in resp.iter_lines():
            if first is None and line.startswith("data: {"):
                chunk = json.loads(line[6:])
                if chunk.get("choices") and chunk["choices"][0]["delta"].get("content"):
                    first = (time.perf_counter() - t0) * 1000
    return first


def paired(n: int, warmup: int, max_tokens: int, gap_s: float) -> dict:
    out: dict = {name: [] for name, _, _ in (BARE, GATEWAY)}
    with httpx.Client(timeout=120) as client:
        for i in range(-warmup, n):
            pair = (BARE, GATEWAY) if i % 2 else (GATEWAY, BARE)
            got = {}
            for name, url, model in pair:
                time.sleep(gap_s)
                got[name] = ttft_ms(client, url, model, i, max_tokens)
            if i >= 0 and None not in got.values():
                for name, value in got.items():
                    out[name].append(value)
    bare, gw = np.array(out["bare_vllm"]), np.array(out["gateway"])
    diff = gw - bare
    rng = np.random.default_rng(0)
    boot = np.median(rng.choice(diff, size=(2000, len(diff))), axis=1)
    return {"pairs": len(diff), "bare_p50_ms": round(float(np.median(bare)), 2),
            "gateway_p50_ms": round(float(np.median(gw)), 2),
            "diff_p50_ms": round(float(np.median(diff)), 2),
            "diff_p50_ci95_ms": [round(float(np.percentile(boot, 2.5)), 2), round(float(np.percentile(boot, 97.5)), 2)],
            "slow_share": {"bare_vllm": round(float((bare > 50).mean()), 3),
                           "gateway": round(float((gw > 50).mean()), 3)},
            "raw_ms": {"bare_vllm": [round(float(v), 1) for v in bare], "gateway": [round(float(v), 1) for v in gw]}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=120, help="prompts, each sent to both targets")
    parser.add_argument("--warmup", type=int, default=16, help="pairs sent first and not counted")
    parser.add_argument("--gap-s", type=float, default=1.1, help="idle time before every request")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--gateway-config", type=Path, default=ROOT / "serve_config.cpu.yaml")
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                        help="an environment variable for both servers (repeatable)")
    args = parser.parse_args()
    extra = env_pairs(args.env)
    if not MODEL_DIR.exists():
        sys.exit("tiny model missing: run `make models` first")
    (ROOT / ".cache/bench").mkdir(parents=True, exist_ok=True)
    with both_servers(extra, args.gateway_config, "paired_ttft"):
        result = {"config": {k: str(v) for k, v in vars(args).items()}, "load_avg_start": os.getloadavg(),
                  **paired(args.requests, args.warmup, args.max_tokens, args.gap_s), "load_avg_end": os.getloadavg()}
    out = ROOT / ".cache/bench/paired_ttft.json"
    out.write_text(json.dumps(result, indent=2))
    lo, hi = result["diff_p50_ci95_ms"]
    print(f"TTFT p50 at c=1, {result['pairs']} prompts each to both: bare {result['bare_p50_ms']} ms, gateway "
          f"{result['gateway_p50_ms']} ms; gateway - bare per prompt: median {result['diff_p50_ms']} ms "
          f"[{lo}, {hi}]; requests over 50 ms: bare {result['slow_share']['bare_vllm']:.1%}, "
          f"gateway {result['slow_share']['gateway']:.1%}")
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
