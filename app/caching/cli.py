"""`llmgw cache ...`: quality evaluation and verifier training, plus stats / invalidate / flush
against a running gateway's admin endpoints."""

from __future__ import annotations

import json
import os
from pathlib import Path

import httpx
import typer
from rich.console import Console
from rich.table import Table

cache_app = typer.Typer(no_args_is_help=True)
console = Console()
URL = typer.Option("http://127.0.0.1:8000", help="Gateway base URL.")
ADMIN = typer.Option(None, help="Admin key (default: $LLMGW_ADMIN_KEY).")


def _headers(admin_key: str | None) -> dict[str, str]:
    key = admin_key or os.environ.get("LLMGW_ADMIN_KEY")
    return {"Authorization": f"Bearer {key}"} if key else {}


def _call(method: str, url: str, admin_key: str | None, **kw) -> None:
    resp = httpx.request(method, url, headers=_headers(admin_key), timeout=30, **kw)
    console.print_json(json.dumps(resp.json()))
    if resp.status_code >= 400:
        raise typer.Exit(1)


@cache_app.command()
def stats(url: str = URL, tenant: str = typer.Option(None), admin_key: str = ADMIN) -> None:
    """Entries, bytes, hits/misses by layer, Redis state."""
    _call("GET", f"{url}/admin/cache/stats", admin_key, params={"tenant": tenant} if tenant else None)


@cache_app.command()
def invalidate(url: str = URL, tenant: str = typer.Option(...), prefix: str = typer.Option(None),
               admin_key: str = ADMIN) -> None:
    """Drop a tenant's entries (optionally only prompts starting with PREFIX)."""
    _call("POST", f"{url}/admin/cache/invalidate", admin_key, json={"tenant": tenant, "prefix": prefix})


@cache_app.command()
def flush(url: str = URL, admin_key: str = ADMIN) -> None:
    """Drop every entry (memory and Redis)."""
    _call("POST", f"{url}/admin/cache/flush", admin_key)


@cache_app.command("eval")
def evaluate() -> None:
    """Precision / duplicate hit rate per setting on held-out QQP; look-alikes; paraphrases; latency."""
    from app.caching.evaluate import evaluate_settings, lookalike_results
    from app.caching.loader import load_verifier
    from app.caching.settings import CacheConfig

    cfg = CacheConfig()
    verifier = load_verifier(cfg)
    threshold = cfg.verifier_threshold if cfg.verifier_threshold is not None else verifier.threshold
    gate = cfg.similarity_threshold
    result = evaluate_settings(verifier, gate, threshold)
    table = Table(title=f"held-out QQP pairs ({result['test_pairs']}), verifier {verifier.version}")
    for col in ("setting", "precision", "duplicate hit rate", "hits"):
        table.add_column(col, justify="right" if col != "setting" else "left")
    for row in result["rows"]:
        table.add_row(row.name, f"{row.precision:.3f}", f"{row.hit_rate:.3f}", str(row.hits))
    console.print(table)
    console.print(f"GPTCache paraphrases served at the default: {result['paraphrase_hit_rate']:.3f}")
    p50, p99 = result["verifier_ms_per_pair"]
    console.print(f"verifier latency per candidate (one pair, new texts): p50 {p50:.1f} ms, p99 {p99:.1f} ms")
    looks = lookalike_results(verifier, gate, threshold)
    for name, r in looks.items():
        console.print(f"look-alike {name}: served {r['served']}/{r['pairs']} "
                      f"(cosine >= 0.90 alone would serve {r['served_by_cosine_0.90']})")
        for pair in r["served_pairs"] if name == "negatives" else []:
            console.print(f"  served negative: {pair}")


@cache_app.command("train-verifier")
def train_verifier_cmd(
    cross_encoder: bool = typer.Option(False, help="Also fine-tune the MiniLM cross-encoder (~15 min on 2 cores)."),
    out: Path = typer.Option(None, help="Artifact path (default: the bundled verifier-v3.npz)."),
) -> None:
    """Train the verifier ensemble (and optionally the cross-encoder) on the QQP fit split (~40 min on 2 cores)."""
    import numpy as np

    from app.caching.train_verifier import train_verifier
    from app.caching.verifier import DEFAULT_ARTIFACT

    arrays, meta = train_verifier()
    target = out or DEFAULT_ARTIFACT
    np.savez_compressed(target, **arrays)
    console.print(f"verifier: test {json.dumps(meta['test'])}, out-of-fold {json.dumps(meta['out_of_fold'])} "
                  f"-> {target}")
    if cross_encoder:
        from app.caching.train_cross_encoder import build_cross_encoder

        meta = build_cross_encoder()
        console.print(f"cross-encoder: {json.dumps(meta['test'])}")
