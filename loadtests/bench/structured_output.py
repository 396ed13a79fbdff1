"""First-attempt structured-output validity over the fixed schema set (loadtests/bench/structured_schemas.json).

    python -m loadtests.bench.structured_output [--pool small] [--seeds 10] [--max-tokens 256]
    python -m loadtests.bench.structured_output --url http://127.0.0.1:8000 [--model small]

Engine mode (default) starts one pool engine (tiny random-weight model, guided decoding as the pools
run it) and validates every answer with jsonschema: first-attempt validity is what guided decoding
alone achieves; an invalid answer is what the gateway would re-ask. Gateway mode sends the same
requests through a running gateway and reads the verdict header; re-asks are counted apart from
``llmgw_structured_output{outcome="reask"}`` on /metrics. Takes the graph lock when it starts vLLM:
``flock /tmp/llmgw-graph.lock nice -n 19 python -m loadtests.bench.structured_output``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import statistics
import time
from collections import Counter
from pathlib import Path

from app.structured.validate import validate_text

SCHEMAS = Path(__file__).with_name("structured_schemas.json")
PROMPT = "Fill in the requested JSON."


def load_schemas() -> dict[str, dict]:
    return json.loads(SCHEMAS.read_text())["schemas"]


def fmt(name: str, schema: dict) -> dict:
    return {"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": True}}


examples: dict[str, str] = {}  # schema -> its first non-valid answer (shown in the report)


async def engine_mode(pool: str, seeds: int, max_tokens: int) -> tuple[Counter, dict[str, Counter], list[float]]:
    from app.config import EngineConfig, PoolConfig
    from app.engines.base import collect
    from app.engines.vllm_engine import VLLMEngine
    from app.generation import GenerationRequest, SamplingOptions

    engine = VLLMEngine(PoolConfig(name=pool, engine=EngineConfig(
        model=f".cache/models/tiny-{pool}", served_model_name=f"tiny-{pool}", max_model_len=1024, dtype="bfloat16",
        enforce_eager=True, max_num_seqs=16), env={"VLLM_CPU_KVCACHE_SPACE": "1"}))
    total, per, latencies = Counter(), {}, []
    try:
        for name, schema in load_schemas().items():
            per[name] = Counter()
            for seed in range(seeds):
                req = GenerationRequest(f"bench-{name}-{seed}", f"tiny-{pool}",
                                        messages=[{"role": "user", "content": PROMPT}],
                                        sampling=SamplingOptions(max_tokens=max_tokens, seed=seed,
                                                                 structured=fmt(name, schema)))
                t0 = time.perf_counter()
                out = await collect(engine.stream(req))
                latencies.append(time.perf_counter() - t0)
                check = validate_text(out.text, schema, out.finish_reason)
                total[check.verdict] += 1
                per[name][check.verdict] += 1
                if check.verdict != "valid" and name not in examples:
                    examples[name] = f"{check.verdict}: {check.errors[0]} <- {out.text[:160]!r}"
    finally:
        engine.shutdown()
    return total, per, latencies


def _reasks(url: str) -> float:
    import httpx

    text = httpx.get(f"{url}/metrics", timeout=10).text
    match = re.search(r'^llmgw_structured_output_total\{outcome="reask"\} ([0-9.e+]+)$', text, re.M)
    return float(match.group(1)) if match else 0.0


def gateway_mode(url: str, model: str, seeds: int, max_tokens: int) -> tuple[Counter, dict[str, Counter], list[float]]:
    import httpx

    total, per, latencies = Counter(), {}, []
    before = _reasks(url)
    with httpx.Client(base_url=url, timeout=120) as client:
        for name, schema in load_schemas().items():
            per[name] = Counter()
            for seed in range(seeds):
                body = {"model": model, "messages": [{"role": "user", "content": PROMPT}], "max_tokens": max_tokens,
                        "seed": seed, "cache": False, "response_format": fmt(name, schema)}
                t0 = time.perf_counter()
                resp = client.post("/v1/chat/completions", json=body)
                latencies.append(time.perf_counter() - t0)
                if resp.status_code == 200:
                    verdict = resp.headers.get("x-llmgw-schema", "missing")
                    text = resp.json()["choices"][0]["message"]["content"] or ""
                    if verdict == "valid" and validate_text(text, schema).verdict != "valid":
                        verdict = "header-lied"
                else:
                    verdict = f"http-{resp.status_code}"
                total[verdict] += 1
                per[name][verdict] += 1
    total["reasks"] = int(_reasks(url) - before)
    return total, per, latencies


def report(total: Counter, per: dict[str, Counter], latencies: list[float], mode: str) -> None:
    n = sum(v for k, v in total.items() if k != "reasks")
    print(f"structured output, {mode}: {len(per)} schemas x {n // max(len(per), 1)} seeds = {n} requests")
    for name, c in per.items():
        print(f"  {name:18s} " + " ".join(f"{k}={v}" for k, v in sorted(c.items())))
    valid = total["valid"]
    print(f"first-attempt valid: {valid}/{n} = {100 * valid / max(n, 1):.1f} %  (truncated {total['truncated']}, "
          f"invalid {total['invalid']})")
    if "reasks" in total:
        print(f"re-asks (counted apart, from /metrics): {total['reasks']}")
    for name, example in examples.items():
        print(f"  first non-valid {name}: {example}")
    lat = sorted(latencies)
    print(f"latency per request: p50 {statistics.median(lat) * 1000:.0f} ms, "
          f"p95 {lat[int(0.95 * (len(lat) - 1))] * 1000:.0f} ms")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", default=None, help="a running gateway; default: start one pool engine in-process")
    ap.add_argument("--model", default="small")
    ap.add_argument("--pool", default="small", choices=["small", "large"])
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--max-tokens", type=int, default=256)
    args = ap.parse_args()
    if args.url:
        report(*gateway_mode(args.url.rstrip("/"), args.model, args.seeds, args.max_tokens), f"gateway {args.url}")
    else:
        from app.cli import ensure_tiny_models

        ensure_tiny_models()
        report(*asyncio.run(engine_mode(args.pool, args.seeds, args.max_tokens)), f"engine tiny-{args.pool}")


if __name__ == "__main__":
    main()
