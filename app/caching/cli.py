"""`llmgw cache ...`: quality evaluation and verifier training, plus stats / invalidate / flush
against a running gateway's admin endpoints."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

import httpx
import typer
from rich.console import Console
from rich.table import Table

cache_app = typer.Typer(no_args_is_help=True)
console = Console()
URL = typer.Option("http://127.0.0.1:8000", help="Gateway base URL.")
ADMIN_ENV = "LLMGW_ADMIN_KEY"
DEFAULT_ADMIN_KEY_FILE = Path(".cache/admin_key")
ADMIN = typer.Option(None, help=f"File holding the admin key (default: ${ADMIN_ENV}, else {DEFAULT_ADMIN_KEY_FILE} "
                     "if present).")
# The old plaintext flag (visible in `ps` and shell history): hidden, and refused with a pointer.
ADMIN_PLAIN = typer.Option(None, "--admin-key", hidden=True)


def read_admin_key(key_file: Path | None, env: Mapping[str, str] = os.environ,
                   default_file: Path = DEFAULT_ADMIN_KEY_FILE) -> str | None:
    """The admin key from ``key_file``, else ``$LLMGW_ADMIN_KEY``, else ``default_file`` if it exists."""
    if key_file is None and env.get(ADMIN_ENV):
        return env[ADMIN_ENV]
    path = key_file or (default_file if default_file.is_file() else None)
    if path is None:
        return None
    try:
        key = path.read_text().strip()
    except OSError as exc:
        raise typer.BadParameter(f"cannot read the admin key file {path}: {exc.strerror}") from exc
    if not key:
        raise typer.BadParameter(f"the admin key file {path} is empty")
    return key


def _refuse_plaintext(admin_key: str | None) -> None:
    if admin_key is not None:
        raise typer.BadParameter(f"--admin-key is removed (the key would show in `ps` and shell history): "
                                 f"set ${ADMIN_ENV} or pass --admin-key-file", param_hint="--admin-key")


def _call(method: str, url: str, key_file: Path | None, plaintext: str | None, **kw) -> None:
    _refuse_plaintext(plaintext)
    key = read_admin_key(key_file)
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    resp = httpx.request(method, url, headers=headers, timeout=30, **kw)
    console.print_json(json.dumps(resp.json()))
    if resp.status_code >= 400:
        raise typer.Exit(1)


@cache_app.command()
def stats(url: str = URL, tenant: str = typer.Option(None), admin_key_file: Path = ADMIN,
          admin_key: str = ADMIN_PLAIN) -> None:
    """Entries, bytes, hits/misses by layer, Redis state."""
    _call("GET", f"{url}/admin/cache/stats", admin_key_file, admin_key,
          params={"tenant": tenant} if tenant else None)


@cache_app.command()
def invalidate(url: str = URL, tenant: str = typer.Option(...), prefix: str = typer.Option(None),
               admin_key_file: Path = ADMIN, admin_key: str = ADMIN_PLAIN) -> None:
    """Drop a tenant's entries (optionally only prompts starting with PREFIX)."""
    _call("POST", f"{url}/admin/cache/invalidate", admin_key_file, admin_key,
          json={"tenant": tenant, "prefix": prefix})


@cache_app.command()
def flush(url: str = URL, admin_key_file: Path = ADMIN, admin_key: str = ADMIN_PLAIN) -> None:
    """Drop every entry (memory and Redis)."""
    _call("POST", f"{url}/admin/cache/flush", admin_key_file, admin_key)


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
