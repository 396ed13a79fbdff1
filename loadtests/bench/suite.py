"""Side-by-side benchmark suite: gateway overhead vs LiteLLM, tokens/s vs bare vLLM, cache-hit latency.

    python -m loadtests.bench.suite [--quick] [--only overhead,litellm,tokens,cache]

1. overhead: the gateway (``echo_gateway.yaml``: ingress → policy → cache miss → router → pool with
   an instant echo engine) vs calling the echo upstream directly, open-loop at fixed RPS; p50/p99.
2. litellm: LiteLLM proxy (own venv, pinned) in front of the same echo upstream, same load; ratio.
3. tokens: tokens/s through the full Serve stack vs the bare vLLM OpenAI server (tiny model).
4. cache: end-to-end latency of exact cache hits through the gateway.
Items whose prerequisites are missing are skipped with a reason. Prints a table; writes
``.cache/bench/results-<timestamp>.json`` and ``loadtests/bench/latest.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import httpx

from loadtests.bench import echo_server, litellm_env
from loadtests.bench.load import run_fixed_rps

ROOT = Path(__file__).resolve().parents[2]
ECHO_PORT, LITELLM_PORT, GATEWAY_PORT = 8201, 8202, 8211
ECHO_URL = f"http://127.0.0.1:{ECHO_PORT}"
TARGETS = {"overhead_p50_ms": 3.0, "overhead_p99_ms": 15.0, "ratio_vs_litellm": 0.5, "ratio_tokens_per_s": 0.9}


def wait_http(url: str, timeout: float, proc: subprocess.Popen | None = None) -> bool:
    """True once ``url`` answers 200; False on timeout or if ``proc`` exits."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(1)
    return False


def stop(proc: subprocess.Popen | None, grace: float = 60) -> None:
    """SIGTERM the process (its own session), then SIGKILL its process group if it lingers."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


def load(url: str, rps: float, duration: float, **kw) -> dict:
    return asyncio.run(run_fixed_rps(url, rps, duration, **kw)).summary()


def side_by_side(name: str, url: str, levels: list[float], duration: float, **kw) -> list[dict]:
    """At each RPS: direct echo, then ``url``; overhead = target percentile − direct percentile."""
    rows = []
    for rps in levels:
        direct = load(ECHO_URL, rps, duration)
        target = load(url, rps, duration, **kw)
        rows.append({"rps": rps, "direct": direct, name: target,
                     "overhead_p50_ms": round(target["p50_ms"] - direct["p50_ms"], 2),
                     "overhead_p99_ms": round(target["p99_ms"] - direct["p99_ms"], 2)})
        print(f"  {name} @ {rps:g} rps: direct p50/p99 {direct['p50_ms']}/{direct['p99_ms']} ms, {name} "
              f"{target['p50_ms']}/{target['p99_ms']} ms, errors {target['errors']}/{target['sent']}", flush=True)
    return rows


def bench_litellm(levels: list[float], duration: float) -> dict:
    try:
        litellm_env.ensure_venv()
    except (subprocess.CalledProcessError, RuntimeError, ValueError) as exc:
        return {"skipped": f"litellm venv could not be prepared: {exc}"}
    proc = litellm_env.start_proxy(ECHO_URL, LITELLM_PORT)
    try:
        if not litellm_env.wait_ready(f"http://127.0.0.1:{LITELLM_PORT}", 180, proc):
            return {"skipped": "LiteLLM proxy did not come up within 180 s"}
        headers = {"Authorization": f"Bearer {litellm_env.MASTER_KEY}"}
        rows = side_by_side("litellm", f"http://127.0.0.1:{LITELLM_PORT}", levels, duration, headers=headers)
        return {"version": litellm_env.installed_version(), "rows": rows}
    finally:
        stop(proc, 20)


def start_gateway(config: Path, timeout: float) -> tuple[subprocess.Popen | None, str | None]:
    """Start ``llmgw run`` with the echo-engine config; (proc, None) when ready or (None, reason)."""
    if not config.exists():
        return None, f"gateway config {config} missing"
    log = (ROOT / ".cache/bench/echo_gateway.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "app.cli", "run", "--config", str(config), "--port",
                             str(GATEWAY_PORT)], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    if wait_http(f"http://127.0.0.1:{GATEWAY_PORT}/readyz", timeout, proc):
        return proc, None
    stop(proc, 30)
    return None, f"gateway did not come up within {timeout:.0f} s (log: .cache/bench/echo_gateway.log)"


def bench_cache(url: str, rps: float, duration: float) -> dict:
    """Prime one prompt, then repeat it at fixed RPS: every answer should be an exact hit."""
    prompt = "What is the capital of France? Answer in one word."
    headers = {"x-llmgw-tenant": "bench-cache"}
    httpx.post(f"{url}/v1/chat/completions", headers=headers, timeout=30, json={
        "model": "auto", "max_tokens": 16, "messages": [{"role": "user", "content": prompt}]})
    time.sleep(1)  # let the store land
    hits = load(url, rps, duration, model="auto", headers=headers, prompts=[prompt], warmup=5)
    direct = load(ECHO_URL, rps, duration, prompts=[prompt], warmup=5)
    cache = hits.get("cache", {})
    hit_rate = sum(n for k, n in cache.items() if k.startswith("hit")) / max(1, sum(cache.values()))
    return {"rps": rps, "hits": hits, "direct": direct, "hit_rate": round(hit_rate, 4),
            "p50_ms": hits["p50_ms"], "p99_ms": hits["p99_ms"]}


def bench_tokens(quick: bool) -> dict:
    from loadtests.bench import gateway_vs_vllm as gv

    if not gv.MODEL_DIR.exists():
        return {"skipped": f"tiny model {gv.MODEL_DIR} missing: run `llmgw tiny-model` / `make models`"}
    args = SimpleNamespace(concurrency=8 if quick else 16, requests=16 if quick else 64,
                           max_tokens=64 if quick else 128)
    out = {"config": vars(args)}
    for name, fn in (("bare_vllm", gv.bare_vllm), ("gateway", gv.gateway)):
        try:
            out[name] = fn(args)
        except (RuntimeError, subprocess.TimeoutExpired) as exc:
            return {"skipped": f"{name} failed: {exc}", **out}
    for mode in ("stream", "unary"):
        bare = out["bare_vllm"][mode]["tokens_per_s"]
        out[f"ratio_{mode}"] = round(out["gateway"][mode]["tokens_per_s"] / bare, 3) if bare else None
    return out


def machine() -> dict:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    return {"host": platform.node(), "cpus": os.cpu_count(), "python": platform.python_version(),
            "platform": platform.platform(), "load_avg": [round(x, 2) for x in os.getloadavg()],
            "git_commit": commit.stdout.strip() or None}


def table(results: dict) -> list[str]:
    """Rows: item, figure, ours, reference, ratio, target."""
    lines = [f"{'item':10} {'figure':34} {'ours':>10} {'reference':>10} {'ratio':>7}  target"]
    ov, ll = results.get("overhead", {}), results.get("litellm", {})
    ll_rows = {r["rps"]: r for r in ll.get("rows", [])}
    for key in ("overhead", "litellm"):
        if "skipped" in results.get(key, {}):
            lines.append(f"{key:10} SKIPPED: {results[key]['skipped']}")
    for r in ov.get("rows", []) or ll.get("rows", []):
        rps, ours = r["rps"], (r if "gateway" in r else None)
        ref = ll_rows.get(rps)
        for q, target in (("p50", TARGETS["overhead_p50_ms"]), ("p99", TARGETS["overhead_p99_ms"])):
            a = ours[f"overhead_{q}_ms"] if ours else None
            b = ref[f"overhead_{q}_ms"] if ref else None
            ratio = a / b if a is not None and b else None
            lines.append(f"{'overhead':10} {f'{q} added ms @ {rps:g} rps (vs LiteLLM)':34} {_f(a):>10} {_f(b):>10} "
                         f"{_f(ratio, 2):>7}  ≤{target:g} ms, ≤{TARGETS['ratio_vs_litellm']}× LiteLLM")
    for r in ov.get("bypass_rows", []):
        label = f"p50/p99 added ms @ {r['rps']:g} rps, bypass"
        lines.append(f"{'overhead':10} {label:34} {_f(r['overhead_p50_ms']):>10} {_f(r['overhead_p99_ms']):>10} "
                     f"{'':>7}  no cache/router (diagnostic)")
    tok = results.get("tokens", {})
    if "skipped" in tok:
        lines.append(f"{'tokens':10} SKIPPED: {tok['skipped']}")
    for mode in ("stream", "unary"):
        if f"ratio_{mode}" in tok:
            lines.append(f"{'tokens':10} {f'tokens/s {mode} (vs bare vLLM)':34} "
                         f"{_f(tok['gateway'][mode]['tokens_per_s'], 0):>10} "
                         f"{_f(tok['bare_vllm'][mode]['tokens_per_s'], 0):>10} {_f(tok[f'ratio_{mode}'], 2):>7}  "
                         f"≥{TARGETS['ratio_tokens_per_s']}×")
    cache = results.get("cache", {})
    if "skipped" in cache:
        lines.append(f"{'cache':10} SKIPPED: {cache['skipped']}")
    elif cache:
        for q in ("p50", "p99"):
            lines.append(f"{'cache':10} {f'hit latency {q} ms (vs direct echo)':34} {_f(cache['hits'][q + '_ms']):>10} "
                         f"{_f(cache['direct'][q + '_ms']):>10} {'':>7}  hit rate {cache['hit_rate']:.0%}")
    return lines


def _clean(obj):
    """NaN → None so the JSON is standard (comparable across commits with any JSON reader)."""
    if isinstance(obj, float) and obj != obj:
        return None
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_clean(v) for v in obj]
    return obj


def _f(v: float | None, digits: int = 1) -> str:
    return "n/a" if v is None else f"{v:,.{digits}f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer RPS levels, shorter runs")
    parser.add_argument("--only", default="overhead,litellm,tokens,cache")
    parser.add_argument("--rps", default=None, help="RPS levels, e.g. 10,50,200")
    parser.add_argument("--duration", type=float, default=None, help="seconds per load level")
    parser.add_argument("--gateway-config", type=Path, default=ROOT / "loadtests/bench/echo_gateway.yaml")
    parser.add_argument("--gateway-timeout", type=float, default=300)
    args = parser.parse_args()
    only = set(args.only.split(","))
    levels = [float(x) for x in (args.rps or ("10,50,200" if args.quick else "10,50,100,200")).split(",")]
    duration = args.duration or (5 if args.quick else 15)
    (ROOT / ".cache/bench").mkdir(parents=True, exist_ok=True)
    results: dict = {"timestamp": time.strftime("%Y-%m-%dT%H:%M:%S"), "machine": machine(), "quick": args.quick,
                     "rps_levels": levels, "duration_s": duration, "targets": TARGETS}
    echo = echo_server.start(ECHO_PORT)
    try:
        if "litellm" in only:
            print("[litellm] LiteLLM proxy vs direct echo", flush=True)
            results["litellm"] = bench_litellm(levels, duration)
        if only & {"overhead", "cache"}:
            print("[overhead] gateway (echo engine) vs direct echo", flush=True)
            gw, reason = start_gateway(args.gateway_config, args.gateway_timeout)
            try:
                url = f"http://127.0.0.1:{GATEWAY_PORT}"
                if "overhead" in only:
                    results["overhead"] = {"skipped": reason} if gw is None else {
                        "rows": side_by_side("gateway", url, levels, duration, model="auto"),
                        # diagnostic: fixed pool, cache bypassed (ingress -> pool only)
                        "bypass_rows": side_by_side("gateway", url, levels, duration, model="small",
                                                    extra_body={"cache": False})}
                if "cache" in only:
                    results["cache"] = {"skipped": reason} if gw is None else bench_cache(url, levels[0], duration)
            finally:
                stop(gw)
    finally:
        stop(echo, 10)
    if "tokens" in only:
        print("[tokens] full Serve stack vs bare vLLM", flush=True)
        results["tokens"] = bench_tokens(args.quick)
    print("\n".join(table(results)))
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for out in (ROOT / f".cache/bench/results-{stamp}.json", ROOT / "loadtests/bench/latest.json"):
        out.write_text(json.dumps(_clean(results), indent=2, allow_nan=False) + "\n")
    print(f"wrote .cache/bench/results-{stamp}.json and loadtests/bench/latest.json")


if __name__ == "__main__":
    main()
