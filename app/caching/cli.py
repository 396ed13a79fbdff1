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


def _ci(v: tuple) -> str:
    return f"{v[0]:.3f} [{v[1]:.3f}, {v[2]:.3f}]"


@cache_app.command("eval")
def evaluate(
    report: Path = typer.Option(None, help="Write a PNG of the precision / hit-rate curves here."),
    rounds: int = typer.Option(1000, help="Bootstrap resamples for the 95 % intervals."),
    legacy: bool = typer.Option(False, help="The older table on all held-out QQP pairs, look-alikes and latency."),
    choose_pairs: Path = typer.Option(None, help="Your labelled pairs (`llmgw cache export-pairs`, 'same' filled in): "
                                      "added to the choose sets of the automatic balanced rule."),
    artifact: Path = typer.Option(None, help="Score this verifier artifact instead of the configured one "
                                  "(e.g. one built by `train-verifier --out`)."),
    prefilter: bool = typer.Option(False, help="Score the int8 prefilter (LLMGW_EMBED_BACKEND=onnx-int8-prefilter): "
                                   "its margin chosen on the choose sets, the pairs it loses on the report sets."),
) -> None:
    """Strict and balanced operating points on disjoint report splits, with bootstrap 95 % intervals."""
    if legacy:
        return _legacy_eval()
    from app.embedding import embedding_kind, verifies_full_precision

    if embedding_kind() != "minilm-fp32" and (prefilter or verifies_full_precision()):
        raise typer.BadParameter("the prefilter gates and verifies on fp32 vectors: score it with "
                                 "`LLMGW_EMBED_BACKEND=onnx llmgw cache eval --prefilter` (fp32 and int8 side by side)")
    from app.caching.loader import load_verifier
    from app.caching.quality import build_sets, choose_balanced, curve, hand_pairs, measure
    from app.caching.settings import CacheConfig
    from app.caching.strictness import operating_point

    cfg = CacheConfig()
    if artifact is not None:
        from app.caching.verifier import PairVerifier

        verifier = PairVerifier.load(artifact)
    else:
        verifier = load_verifier(cfg)
    choose, sets = build_sets(verifier)
    if "ovos_choose" not in choose:
        console.print("outside set (OVOS intent files) not installed: `make eval-data` adds it to the report")
    recall_sets, negative_sets = ("everyday_cal", "ovos_choose"), ("everyday_cal", "lookalikes")
    if choose_pairs is not None:
        from app.caching.log_pairs import labelled_pairs

        yours = labelled_pairs(choose_pairs)
        if not yours:
            raise typer.BadParameter(f"{choose_pairs} has no labelled row ('same': true/false)")
        choose["your_pairs"] = hand_pairs(verifier, pairs=yours, name="your-pairs")
        recall_sets, negative_sets = (*recall_sets, "your_pairs"), (*negative_sets, "your_pairs")
    gate, threshold, info = choose_balanced(choose, recall_sets=recall_sets, negative_sets=negative_sets)
    console.print(f"balanced point chosen on the choose sets: gate {gate:.2f}, threshold {threshold:.3f} "
                  f"({json.dumps({k: round(v, 3) for k, v in info.items()})}); configured: "
                  f"gate {cfg.balanced_similarity_threshold:.2f}, threshold {cfg.balanced_verifier_threshold:.3f}")
    if "ovos_choose" in choose:  # the outside negatives too: their closest look-alikes bound the threshold
        g2, t2, info2 = choose_balanced(choose, recall_sets=recall_sets, negative_sets=(*negative_sets, "ovos_choose"))
        console.print(f"  with the OVOS choose negatives as well: gate {g2:.2f}, threshold {t2:.3f} "
                      f"({json.dumps({k: round(v, 3) for k, v in info2.items()})})")
    points = {level: operating_point(cfg, level, getattr(verifier, "threshold", None))
              for level in ("strict", "balanced")}
    points["strict + slot veto"] = type(points["strict"])(points["strict"].gate, points["strict"].threshold, True)
    if prefilter:
        sets = _prefilter_sets(cfg, choose, sets, points)
    table = Table(title=f"report splits (never used to choose), verifier {verifier.version}"
                  + (f", int8 prefilter (margin {cfg.prefilter_margin:.2f})" if prefilter else ""))
    for col in ("set", "pairs (same/diff)", "level", "precision [95% CI]", "hit rate [95% CI]", "false hits"):
        table.add_column(col)
    for s in sets.values():
        for level, p in points.items():
            m = measure(s, p.gate, p.threshold, p.slot_veto, rounds)
            n = m["pairs"]
            table.add_row(s.name, f"{n[0]} ({n[1]}/{n[2]})", f"{level} ({p.gate:.2f}, {p.threshold:.3f})",
                          _ci(m["precision"]) if "precision" in m else "-", _ci(m["hit_rate"]),
                          f"{m['false_hits'][0]}/{m['false_hits'][1]}" if "false_hits" in m else "-")
    console.print(table)
    if report is not None:
        from app.caching.quality import merged
        from app.routing.plots import Panel, write_report

        shown = [merged("QQP report splits", [s for k, s in sets.items() if k.startswith("qqp")]),
                 sets["everyday_eval"]]
        if "ovos_r1" in sets:  # the outside set's two report groups, merged
            shown.append(merged("outside: OVOS report groups", [sets["ovos_r1"], sets["ovos_r2"]]))
        panels = []
        for s in shown:
            curves = {f"gate {points['strict'].gate:.2f}": curve(s, points["strict"].gate),
                      f"gate {points['balanced'].gate:.2f} + slot veto": curve(s, points["balanced"].gate, True)}
            marks = {}
            for level in ("strict", "balanced"):
                p = points[level]
                hit = s.served(p.gate, p.threshold, p.slot_veto)
                marks[level] = (float(hit[s.same].mean()), float(s.same[hit].mean()) if hit.any() else 1.0)
            panels.append(Panel(f"{s.name} ({len(s.same)} pairs)", "hit rate (share of true duplicates served)",
                                "precision (served hits that were the same question)",
                                {k: (x, y) for k, (x, y) in curves.items()}, points=marks,
                                ylim=(0.0 if s.name.startswith("outside") else 0.5, 1.02)))
        write_report(report, f"semantic cache, verifier {verifier.version}: precision vs hit rate", panels)
        console.print(f"wrote {report}")


def _prefilter_sets(cfg, choose: dict, sets: dict, points: dict) -> dict:
    """The report sets as the int8 prefilter serves them, after printing its chosen margin and what it loses."""
    from dataclasses import replace

    from app.caching.prefilter import MARGINS, choose_margin, int8_encoder, losses, with_search

    encode = int8_encoder()
    levels = {k: points[k] for k in ("strict", "balanced")}
    margin, info = choose_margin(choose, levels, encode)
    console.print(f"prefilter margin chosen on the choose sets (largest fp32 -> int8 cosine drop of a pair over a "
                  f"gate): {margin:.2f} ({ {k: round(v, 4) for k, v in info.items()} }); configured: "
                  f"{cfg.prefilter_margin:.2f}")
    out = {k: with_search(s, encode, cfg.prefilter_margin) for k, s in sets.items()}
    report_lost = {m: sum(v["lost_true"] for s in out.values() for v in losses(replace(s, margin=m), levels).values())
                   for m in MARGINS}
    console.print(f"  served true duplicates lost per margin on the report splits (not used to choose): {report_lost}")
    table = Table(title="int8 prefilter vs the fp32 cache on the report splits (fp32 gate and verifier after it)")
    for col in ("set", "level", "served lost: true / false", "int8 search passes", "fp32 gate passes",
                "extra fp32 forwards"):
        table.add_column(col)
    for s in out.values():
        for level, v in losses(s, levels).items():
            table.add_row(s.name, level, f"{v['lost_true']} / {v['lost_false']}", str(v["searched"]),
                          str(v["gated_fp32"]), str(v["extra_forwards"]))
    console.print(table)
    return out


def _legacy_eval() -> None:
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


@cache_app.command("export-pairs")
def export_pairs(
    from_request_log: Path = typer.Option(..., help="Request log JSONL (rotated copies are read too)."),
    out: Path = typer.Option(..., help="Write the candidate pairs here (JSONL, 'same': null to fill in)."),
    tenant: str = typer.Option(None, help="Only this tenant's records."),
    gate: float = typer.Option(0.70, help="Cosine a candidate needs (the balanced gate)."),
) -> None:
    """Candidate pairs from your traffic: each logged question with its nearest earlier one of the same tenant."""
    from app.caching.log_pairs import candidate_pairs, log_questions, write_pairs
    from app.observability.request_log import iter_all_records, iter_records
    from app.routing.datasets import embed_texts_cached

    path = str(from_request_log)
    records = iter_all_records(path) if tenant is None else iter_records(path, tenant=tenant)
    questions = log_questions(records)
    if len(questions) < 2:
        console.print(f"only {len(questions)} questions in the log; nothing to pair")
        raise typer.Exit(1)
    vectors = embed_texts_cached([q for _, q in questions], "request-log-cache")
    rows = candidate_pairs(questions, vectors, gate)
    write_pairs(rows, out)
    console.print(f"{len(questions)} questions -> {len(rows)} candidate pairs (cosine >= {gate:.2f}) in {out}; "
                  "set 'same' to true/false, then `llmgw cache eval --choose-pairs` " + str(out))


@cache_app.command("train-verifier")
def train_verifier_cmd(
    cross_encoder: bool = typer.Option(False, help="Also fine-tune the MiniLM cross-encoder (~15 min on 2 cores)."),
    out: Path = typer.Option(None, help="Artifact path (default: the bundled verifier artifact)."),
    mix: str = typer.Option("qqp", help="Training data: qqp (QQP fit split only, the shipped v3) or qqp+intents (plus "
                            "the short-command pairs of `make train-data`, app/caching/train_pairs.py)."),
    intent_weight: int = typer.Option(1, help="Times each short-command pair is repeated in training."),
    intent_cap: int = typer.Option(0, help="Short-command pairs per intent family, half positives (0: all)."),
    attention: int = typer.Option(2, help="Attention networks (0: MLPs + trees only, much faster)."),
    mlps: int = typer.Option(5, help="MLPs in the ensemble."),
    trees: int = typer.Option(4, help="Boosted-tree models in the ensemble."),
    folds: int = typer.Option(5, help="Folds for the out-of-fold threshold (0: use the QQP choose half)."),
) -> None:
    """Train the verifier ensemble (and optionally the cross-encoder) on the fit split (~40 min on 2 cores)."""
    import numpy as np

    from app.caching.train_verifier import train_verifier
    from app.caching.verifier import DEFAULT_ARTIFACT

    arrays, meta = train_verifier(mix=mix, intent_weight=intent_weight, n_att=attention, n_mlp=mlps, n_hgb=trees,
                                  folds=folds, intent_cap=intent_cap)
    target = out or DEFAULT_ARTIFACT
    np.savez_compressed(target, **arrays)
    console.print(f"verifier: test {json.dumps(meta['test'])}, out-of-fold {json.dumps(meta['out_of_fold'])} "
                  f"-> {target}")
    if cross_encoder:
        from app.caching.train_cross_encoder import build_cross_encoder

        meta = build_cross_encoder()
        console.print(f"cross-encoder: {json.dumps(meta['test'])}")
