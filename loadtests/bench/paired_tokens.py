"""Tokens/s, bare vLLM vs the gateway, both up at once and loaded in alternating blocks (issue 12).

    python -m loadtests.bench.paired_tokens [--concurrency 16] [--blocks 8] [--block-requests 64]
        [--max-tokens 128] [--mode stream|unary] [--gap-s 1.5] [--env KEY=VALUE ...]

``gateway_vs_vllm`` runs its targets one after the other, so each lands in an engine phase of its own: on
this machine the same bare server read 298 and 632 tok/s in two quiet runs. Here both servers stay up and
take turns: block pairs in ABBA order (bare, gateway, gateway, bare, ...), ``--block-requests`` requests at
``--concurrency`` each, ``--gap-s`` idle before every block (longer than vLLM's 1 s worker busy-wait, so the
other engine has stopped spinning). The figure is the median over block pairs of gateway ÷ bare tokens/s with
a bootstrap 95 % interval, next to each side's median and the front-end CPU ms per token (every process but
the engine's, as in ``gateway_vs_vllm``). Writes .cache/bench/paired_tokens.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time

import numpy as np

from loadtests.bench.env_spec import env_pairs
from loadtests.bench.gateway_vs_vllm import MODEL_DIR, ROOT, _is_engine, cpu_by_process
from loadtests.bench.openai_load import run_load
from loadtests.bench.paired_ttft import BARE, GATEWAY, both_servers


def block(target: tuple[str, str, str], root: int, args) -> dict:
    """One block of load on one target: its tokens/s and front-end CPU per token."""
    _, url, model = target
    before = cpu_by_process(root)
    res = asyncio.run(run_load(url, model, args.concurrency, args.block_requests, args.max_tokens,
                               args.mode == "stream"))
    after = cpu_by_process(root)
    front = sum(after[k] - before.get(k, 0.0) for k in after if not _is_engine(k))
    return {"tokens_per_s": res.tokens_per_s, "errors": res.errors,
            "front_cpu_ms_per_token": front * 1000 / max(1, res.tokens)}


def paired_blocks(roots: dict[str, int], args) -> dict:
    for target in (BARE, GATEWAY):  # warm-up, not counted
        block(target, roots[target[0]], args)
    rows: dict[str, list[dict]] = {BARE[0]: [], GATEWAY[0]: []}
    for i in range(args.blocks):
        for target in ((BARE, GATEWAY) if i % 2 == 0 else (GATEWAY, BARE)):
            time.sleep(args.gap_s)
            rows[target[0]].append(block(target, roots[target[0]], args))
    bare = np.array([r["tokens_per_s"] for r in rows[BARE[0]]])
    gw = np.array([r["tokens_per_s"] for r in rows[GATEWAY[0]]])
    ratio = gw / np.maximum(bare, 1e-9)
    boot = np.median(np.random.default_rng(0).choice(ratio, size=(2000, len(ratio))), axis=1)
    cpu = {name: round(float(np.median([r["front_cpu_ms_per_token"] for r in rs])), 3) for name, rs in rows.items()}
    return {"block_pairs": len(ratio), "bare_tokens_per_s_p50": round(float(np.median(bare)), 1),
            "gateway_tokens_per_s_p50": round(float(np.median(gw)), 1),
            "ratio_p50": round(float(np.median(ratio)), 3),
            "ratio_ci95": [round(float(np.percentile(boot, 2.5)), 3), round(float(np.percentile(boot, 97.5)), 3)],
            "front_cpu_ms_per_token_p50": cpu,
            "errors": {name: sum(r["errors"] for r in rs) for name, rs in rows.items()},
            "blocks": {name: [round(r["tokens_per_s"], 1) for r in rs] for name, rs in rows.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--blocks", type=int, default=8, help="block pairs, each one block on both targets")
    parser.add_argument("--block-requests", type=int, default=64)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--mode", choices=("stream", "unary"), default="stream")
    parser.add_argument("--gap-s", type=float, default=1.5, help="idle time before every block")
    parser.add_argument("--gateway-config", default=str(ROOT / "serve_config.cpu.yaml"))
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                        help="an environment variable for both servers (repeatable)")
    args = parser.parse_args()
    if not MODEL_DIR.exists():
        sys.exit("tiny model missing: run `make models` first")
    (ROOT / ".cache/bench").mkdir(parents=True, exist_ok=True)
    with both_servers(env_pairs(args.env), args.gateway_config, "paired_tokens") as roots:
        result = {"config": vars(args), "load_avg_start": os.getloadavg(), **paired_blocks(roots, args),
                  "load_avg_end": os.getloadavg()}
    out = ROOT / ".cache/bench/paired_tokens.json"
    out.write_text(json.dumps(result, indent=2))
    lo, hi = result["ratio_ci95"]
    cpu = result["front_cpu_ms_per_token_p50"]
    print(f"{args.mode} tokens/s at c={args.concurrency}, {result['block_pairs']} block pairs: bare "
          f"{result['bare_tokens_per_s_p50']}, gateway {result['gateway_tokens_per_s_p50']}; gateway / bare per "
          f"pair: median {result['ratio_p50']} [{lo}, {hi}]; front-end CPU ms/token bare {cpu[BARE[0]]}, "
          f"gateway {cpu[GATEWAY[0]]}; errors {result['errors']}")
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
