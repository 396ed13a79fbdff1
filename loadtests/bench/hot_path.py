"""Issue 12's figures in one table: before/after overhead and CPU per path, tokens/s vs bare vLLM and Ray
Serve LLM, TTFT, with each target's verdict; a PNG of CPU ms per request per process, before vs after.

    python -m loadtests.bench.hot_path --run            # both benches, then the table (~30 min here)
    python -m loadtests.bench.hot_path [--ab FILE] [--tokens FILE] [--png docs/img/hot_path.png]

``--run`` makes the baseline worktree (commit 76ddd5b, docs/decisions.md) and one of HEAD if missing, runs
``loadtests.bench.ab`` (echo engines: cache miss, bypass, exact hit, stream at 10/30/50 RPS, with LiteLLM)
and ``loadtests.bench.gateway_vs_vllm`` (tiny model: bare vLLM, Ray Serve LLM, the gateway at c=1 and 16),
then reads their JSON. Without ``--run`` it reads the newest results in .cache/bench.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BASELINE = "76ddd5b"
BENCH = ROOT / ".cache/bench"


def worktree(path: Path, commit: str) -> Path:
    if not path.exists():
        subprocess.run(["git", "worktree", "add", "--detach", str(path), commit], cwd=ROOT, check=True)
        (path / ".cache").symlink_to(ROOT / ".cache")
    return path


def run_benches() -> tuple[Path, Path]:
    base = worktree(Path("/tmp/llmgw-baseline"), BASELINE)
    head_commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    head = worktree(Path(f"/tmp/llmgw-{head_commit[:8]}"), head_commit)
    subprocess.run([sys.executable, "-m", "loadtests.bench.ab", "--trees", f"{base},{head}", "--rps", "10,30,50",
                    "--duration", "6", "--litellm"], cwd=ROOT, check=True)
    subprocess.run([sys.executable, "-m", "loadtests.bench.gateway_vs_vllm"], cwd=head, check=True,
                   env={**__import__("os").environ, "PYTHONPATH": str(head)})
    return newest("ab-*.json"), BENCH / "gateway_vs_vllm.json"


def newest(pattern: str) -> Path:
    files = sorted(BENCH.glob(pattern), key=lambda p: p.stat().st_mtime)
    if not files:
        sys.exit(f"no {pattern} in {BENCH}: run with --run")
    return files[-1]


def _rows(run: dict) -> dict[tuple[str, float], dict]:
    return {(r["path"], r["rps"]): r for r in run["rows"]}


def _added(row: dict, rps: float) -> str:
    ok = row["gateway"]["achieved_rps"] >= 0.95 * rps and not row["gateway"]["errors"] and row["overhead_p50_ms"] < 500
    sat = "" if ok else " (saturated)"
    return f"{row['overhead_p50_ms']:.1f} / {row['overhead_p99_ms']:.1f}{sat}"


def overhead_lines(ab: dict) -> list[str]:
    before, after = _rows(ab["runs"][0]), _rows(ab["runs"][-1])
    lite = {row["rps"]: row for row in (ab.get("litellm") or {}).get("rows", [])}
    out = ["| path @ RPS | before added p50 / p99 ms | after added p50 / p99 ms | LiteLLM added p50 / p99 ms | "
           "after ÷ LiteLLM p50 | CPU ms/req before → after | ratio |", "|---|---:|---:|---:|---:|---:|---:|"]
    for (path, rps), a in after.items():
        b = before.get((path, rps))
        lt = lite.get(rps)
        lt_p50 = lt["overhead_p50_ms"] if lt else None
        lt_txt = f"{lt['overhead_p50_ms']:.1f} / {lt['overhead_p99_ms']:.1f}" if lt else "–"
        ratio_lite = f"{a['overhead_p50_ms'] / lt_p50:.2f}" if lt_p50 else "–"
        cb = b["serve_cpu_ms_per_request"]["total"] if b else None
        ca = a["serve_cpu_ms_per_request"]["total"]
        before_txt = _added(b, rps) if b else "–"
        cpu_ratio = f"{ca / cb:.2f}" if cb else "–"
        out.append(f"| {path} @ {rps:g} | {before_txt} | {_added(a, rps)} | {lt_txt} | {ratio_lite} | "
                   f"{cb if cb is not None else '–'} → {ca} | {cpu_ratio} |")
    return out


def tokens_lines(tok: dict) -> list[str]:
    targets = [t for t in ("bare_vllm", "serve_llm", "gateway") if t in tok]
    out = ["| mode | " + " | ".join(f"{t} tok/s" for t in targets) + " | gateway ÷ bare | gateway ÷ Serve LLM | "
           "TTFT p50 ms (" + ", ".join(targets) + ") | front-end CPU ms/token (" + ", ".join(targets) + ") |",
           "|---|" + "---:|" * (len(targets) + 4)]
    for mode in tok[targets[0]]:
        rows = [tok[t][mode] for t in targets]
        gw, bare, sl = tok.get("gateway", {}).get(mode), tok.get("bare_vllm", {}).get(mode), tok.get(
            "serve_llm", {}).get(mode)
        r_bare = f"{gw['tokens_per_s'] / bare['tokens_per_s']:.2f}" if gw and bare else "–"
        r_sl = f"{gw['tokens_per_s'] / sl['tokens_per_s']:.2f}" if gw and sl else "–"
        out.append(f"| {mode} | " + " | ".join(f"{r['tokens_per_s']:.0f}" for r in rows) + f" | {r_bare} | {r_sl} | "
                   + ", ".join(f"{r['ttft_p50_ms']:.0f}" for r in rows) + " | "
                   + ", ".join(f"{r['front_cpu_ms_per_token']:.2f}" for r in rows) + " |")
    return out


def png(ab: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    before, after = _rows(ab["runs"][0]), _rows(ab["runs"][-1])
    keys = [k for k in after if k[1] == min(r for _, r in after)]
    procs = sorted({p for k in keys for run in (before, after) if k in run
                    for p in run[k]["serve_cpu_ms_per_request"] if p != "total"})
    fig, ax = plt.subplots(figsize=(9, 4.5))
    labels, x = [], 0
    for key in keys:
        for side, run in (("before", before), ("after", after)):
            if key not in run:
                continue
            bottom = 0.0
            for i, p in enumerate(procs):
                v = run[key]["serve_cpu_ms_per_request"].get(p, 0.0)
                ax.bar(x, v, bottom=bottom, color=plt.cm.tab10(i % 10), label=p if x == 0 else None)
                bottom += v
            labels.append(f"{key[0]}\n{side}")
            x += 1
    ax.set_xticks(range(len(labels)), labels, fontsize=8)
    ax.set_ylabel("CPU ms per request (all gateway processes)")
    ax.set_title(f"CPU per request at {keys[0][1]:g} RPS, echo engines: {BASELINE} vs after")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", action="store_true")
    parser.add_argument("--ab", type=Path)
    parser.add_argument("--tokens", type=Path)
    parser.add_argument("--png", type=Path, default=ROOT / "docs/img/hot_path_cpu.png")
    args = parser.parse_args()
    if args.run:
        args.ab, args.tokens = run_benches()
    ab = json.loads((args.ab or newest("ab-*.json")).read_text())
    print("\n".join(overhead_lines(ab)))
    tok_file = args.tokens or BENCH / "gateway_vs_vllm.json"
    if tok_file.exists():
        print()
        print("\n".join(tokens_lines(json.loads(tok_file.read_text()))))
    png(ab, args.png)
    print(f"\nwrote {args.png}")


if __name__ == "__main__":
    main()
