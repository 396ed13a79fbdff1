"""First-attempt structured-output validity over the fixed schema set (loadtests/bench/structured_schemas.json).

    python -m loadtests.bench.structured_output [--pool small] [--seeds 10] [--max-tokens 256]
    python -m loadtests.bench.structured_output --url http://127.0.0.1:8000 [--model small]
    python -m loadtests.bench.structured_output --url http://127.0.0.1:8000 --reask [--seeds 10]

Engine mode (default) starts one pool engine (tiny random-weight model, guided decoding as the pools
run it) and validates every answer with jsonschema: first-attempt validity is what guided decoding
alone achieves; an invalid answer is what the gateway would re-ask. Gateway mode sends the same
requests through a running gateway and reads the verdict header; re-asks are counted apart from
``llmgw_structured_output{outcome="reask"}`` on /metrics. Takes the graph lock when it starts vLLM:
``flock /tmp/llmgw-graph.lock nice -n 19 python -m loadtests.bench.structured_output``.

``--reask`` (gateway mode) measures the re-ask path with schemas guided decoding cannot fully enforce:
``oneOf`` is decoded as ``anyOf``, so an instance matching both branches is invalid only to the
gateway's final validation. ``REASK_SCHEMAS``: a schema every answer violates (two identical branches:
first attempt invalid -> one re-ask -> 502 ``json_schema_validation_failed``), one some answers violate
(an integer matches both branches, a decimal only one: the re-ask may recover), and the same schema as
``anyOf`` (never re-asked: the single-attempt baseline). Per schema: statuses, latency, /metrics deltas.
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

DIGIT = {"type": "integer", "minimum": 0, "maximum": 9}
REASK_SCHEMAS = {  # fixed before the first --reask run
    "always_invalid": {"type": "object", "properties": {"n": {"oneOf": [DIGIT, DIGIT]}}, "required": ["n"],
                       "additionalProperties": False},
    "sometimes_invalid": {"type": "object", "properties": {"n": {"oneOf": [DIGIT, {"type": "number", "minimum": 0,
                                                                                  "maximum": 9}]}},
                          "required": ["n"], "additionalProperties": False},
    "anyof_baseline": {"type": "object", "properties": {"n": {"anyOf": [DIGIT, {"type": "number", "minimum": 0,
                                                                               "maximum": 9}]}},
                       "required": ["n"], "additionalProperties": False},
}
OUTCOMES = ("valid", "invalid", "truncated", "reask", "failed")


async def engine_mode(pool: str, seeds: int, max_tokens: int) -> tuple[Counter, dict[str, Counter], list[float]]:
    from app.config import EngineConfig, PoolConfig
    from app.engines.base import collect
    from app.engines.vllm_engine import VLLMEngine
    from app.generation import GenerationRequest, SamplingOptions

    engine = VLLMEngine(PoolConfig(name=pool, engine=EngineConfig(
        model=f".cache/models/tiny-{pool}", served_model_name=f"tiny-{pool}", max_model_len=1024, dtype="float32",
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


def _outcomes(url: str) -> Counter:
    """``llmgw_structured_output_total`` by outcome, from the gateway's /metrics."""
    import httpx

    text = httpx.get(f"{url}/metrics", timeout=10).text
    found = Counter()
    for outcome in OUTCOMES:
        match = re.search(r'^llmgw_structured_output_total\{outcome="' + outcome + r'"\} ([0-9.e+]+)$', text, re.M)
        found[outcome] = int(float(match.group(1))) if match else 0
    return found


def _reasks(url: str) -> float:
    return float(_outcomes(url)["reask"])


def reask_mode(url: str, model: str, seeds: int, max_tokens: int) -> None:
    """The re-ask path through the gateway: statuses, latency and metric deltas per REASK_SCHEMAS entry."""
    import httpx

    print(f"structured output re-ask path, gateway {url}: {len(REASK_SCHEMAS)} schemas x {seeds} seeds")
    with httpx.Client(base_url=url, timeout=120) as client:
        for name, schema in REASK_SCHEMAS.items():
            before, statuses, latencies = _outcomes(url), Counter(), {}
            for seed in range(seeds):
                body = {"model": model, "messages": [{"role": "user", "content": PROMPT}], "max_tokens": max_tokens,
                        "seed": seed, "cache": False, "response_format": fmt(name, schema)}
                t0 = time.perf_counter()
                resp = client.post("/v1/chat/completions", json=body)
                spent = time.perf_counter() - t0
                if resp.status_code == 200:
                    key = f"200-{resp.headers.get('x-llmgw-schema', 'missing')}"
                else:
                    key = f"{resp.status_code}-{resp.json().get('error', {}).get('code')}"
                statuses[key] += 1
                latencies.setdefault(key, []).append(spent)
            delta = _outcomes(url) - before
            print(f"  {name:18s} " + " ".join(f"{k}={v}" for k, v in sorted(statuses.items()))
                  + "  | metrics " + " ".join(f"{k}+{delta[k]}" for k in OUTCOMES if delta[k]))
            for key, values in sorted(latencies.items()):
                print(f"    {key:40s} p50 {statistics.median(values) * 1000:6.0f} ms  "
                      f"max {max(values) * 1000:6.0f} ms  (n={len(values)})")


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
    ap.add_argument("--reask", action="store_true", help="gateway mode: measure the re-ask path (REASK_SCHEMAS)")
    args = ap.parse_args()
    if args.reask:
        if not args.url:
            ap.error("--reask needs --url (the re-ask happens in the gateway)")
        reask_mode(args.url.rstrip("/"), args.model, args.seeds, args.max_tokens)
    elif args.url:
        report(*gateway_mode(args.url.rstrip("/"), args.model, args.seeds, args.max_tokens), f"gateway {args.url}")
    else:
        from app.cli import ensure_tiny_models

        ensure_tiny_models()
        report(*asyncio.run(engine_mode(args.pool, args.seeds, args.max_tokens)), f"engine tiny-{args.pool}")


if __name__ == "__main__":
    main()
