"""`llmgw router train|eval|calibrate`: train the classifier, report its quality (tables + PNG), and
recalibrate its large-share mapping on your own traffic."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from app.routing.evaluate import RouterReport

router_app = typer.Typer(no_args_is_help=True)
console = Console()


def print_report(report: RouterReport, title: str) -> None:
    table = Table(title=title)
    for col in ("threshold", "large share", "accuracy", "PGR"):
        table.add_column(col, justify="right")
    for p in report.points:
        table.add_row(f"{p.threshold:.3f}", f"{p.large_share:.2f}", f"{p.accuracy:.3f}", f"{p.pgr:.3f}")
    console.print(table)
    console.print(
        f"acc_small={report.acc_small:.3f} acc_large={report.acc_large:.3f}  APGR={report.apgr:.3f} (random 0.500)  "
        f"large share for 50% PGR={report.share_for_pgr50:.2f}, for 80% PGR={report.share_for_pgr80:.2f}"
    )


def _ci(v: tuple[float, float, float]) -> str:
    return f"{v[0]:.3f} [{v[1]:.3f}, {v[2]:.3f}]"


@router_app.command()
def train(
    out: Path = typer.Option(None, help="Artifact path (default: the bundled app/routing/artifacts/router-v2.json)."),
    v1: bool = typer.Option(False, help="Only the v1 MMLU/GSM8K MLP (no blend, no calibration scores)."),
    kind: str = typer.Option("mlp", help="v1 only: mlp | logreg"),
    seed: int = typer.Option(0),
    large_share: float = typer.Option(0.4, help="v1 only: default threshold sends about this share to large."),
    by_source: bool = typer.Option(False, help="v1 only: hold out whole sources (subjects)."),
    from_request_log: Path = typer.Option(None, help="Also fit the blend on labelled records of this request log."),
    tenant: str = typer.Option(None, help="With --from-request-log: only this tenant's records."),
    retrain_base: bool = typer.Option(False, help="Retrain the base MLP too (embeds all 11.5k prompts: slow)."),
) -> None:
    """Train on ../shared/data/routing (+ our calibration set, + your labelled request log); write the artifact."""
    from app.routing.classifier import DEFAULT_ARTIFACT

    target = out or DEFAULT_ARTIFACT
    if v1:
        from app.routing.train import train_router

        artifact, extra = train_router(kind=kind, seed=seed, large_share=large_share, by_group=by_source)
        print_report(extra["report"], f"held-out test split ({artifact['metadata']['split']['test']} prompts)")
    else:
        from app.routing.datasets import embed_texts_cached
        from app.routing.request_log_data import labelled, read_log
        from app.routing.train_general import train_general

        extra_rows = extra_emb = None
        if from_request_log is not None:
            extra_rows = labelled(read_log(str(from_request_log), tenant))
            console.print(f"request log: {len(extra_rows)} labelled prompts "
                          f"({int(extra_rows.large.sum())} needing the large model)")
            extra_emb = embed_texts_cached(extra_rows.prompts, "request-log") if len(extra_rows) else None
        artifact, extra = train_general(seed=seed, extra=extra_rows, extra_emb=extra_emb, retrain_base=retrain_base)
        if extra["base_report"] is not None:
            print_report(extra["base_report"], "base MLP, RouteLLM held-out split")
        blend = artifact["metadata"]["blend"]
        console.print(f"blend rows {blend['rows']}, chosen {blend['chosen']}; threshold {artifact['threshold']:.4f} "
                      f"(out-of-fold calibration accuracy {blend['calibration_oof_accuracy']:.3f}, "
                      f"large share {blend['calibration_large_share']:.2f})")
    target.write_text(json.dumps(artifact, separators=(",", ":")))
    console.print(f"wrote {target} ({target.stat().st_size // 1024} KiB, version {artifact['version']})")


@router_app.command("eval")
def evaluate(
    artifact: Path = typer.Option(None, help="Artifact to evaluate (default: bundled)."),
    report: Path = typer.Option(None, help="Write a PNG of the quality/cost curves here."),
    rounds: int = typer.Option(1000, help="Bootstrap resamples for the 95 % intervals."),
) -> None:
    """APGR on the RouteLLM held-out split and accuracy on the everyday eval set, beside the length rule."""
    from app.routing.classifier import RouterClassifier
    from app.routing.quality import everyday_quality, routellm_quality

    clf = RouterClassifier.load(artifact)
    rl = routellm_quality(clf, rounds=max(rounds // 4, 100))
    table = Table(title=f"RouteLLM MMLU/GSM8K held-out split ({rl.n} prompts), {clf.version}")
    for col in ("scorer", "APGR [95% CI]", "large share for 50% PGR"):
        table.add_column(col)
    for name, v in rl.apgr.items():
        table.add_row(name, _ci(v), f"{rl.share_for_pgr50[name]:.2f}")
    console.print(table)
    ev = everyday_quality(clf, rounds=rounds)
    table = Table(title=f"everyday eval set ({ev.n} prompts): router threshold {ev.threshold:.3f}, "
                        f"length rule >= {ev.length_cutoff} chars (both chosen on the calibration set)")
    for col in ("slice", "n (large)", "router acc [95% CI]", "length rule acc [95% CI]"):
        table.add_column(col)
    table.add_row("all", f"{ev.n}", _ci(ev.accuracy["router"]), _ci(ev.accuracy["length rule"]))
    table.add_row("AUC", "", _ci(ev.auc["router"]), _ci(ev.auc["length rule"]))
    for group in (ev.by_category, ev.by_case):
        for key, v in group.items():
            table.add_row(key, f"{int(v['n'][0])} ({int(v['n'][1])})", _ci(v["router"]), _ci(v["length rule"]))
    console.print(table)
    console.print(f"large share: router {ev.large_share['router']:.2f}, length rule {ev.large_share['length rule']:.2f}"
                  f"; only the router right: {ev.router_wins}, only the length rule right: {len(ev.length_wins)}")
    for category, prompt, label in ev.length_wins:
        console.print(escape(f"  length rule right, router wrong [{category}, needs {'large' if label else 'small'}]: "
                             f"{prompt[:90]!r}"))  # escaped: rich would eat "[category, ...]" as markup
    if report is not None:
        from app.routing.plots import Panel, write_report

        t_share = ev.large_share["router"]
        recall = ev.curves["router"][1]
        recall_at = float(recall[min(round(t_share * ev.n), ev.n)])
        write_report(report, f"router {clf.version}: quality vs cost", [
            Panel("RouteLLM held-out: performance gap recovered", "share of calls to the large model",
                  "PGR", {f"{k} (APGR {v[0]:.2f})": rl.curves[k] for k, v in rl.apgr.items()}, diagonal=True,
                  ylim=(-0.1, 1.15)),
            Panel(f"everyday eval set ({ev.n} prompts)", "share of prompts sent to the large model",
                  "share of large-needed prompts that got it",
                  {f"{k} (AUC {ev.auc[k][0]:.2f})": ev.curves[k] for k in ev.curves}, diagonal=True,
                  points={f"router threshold: acc {ev.accuracy['router'][0]:.2f}": (t_share, recall_at)}),
        ])
        console.print(f"wrote {report}")


@router_app.command()
def calibrate(
    from_request_log: Path = typer.Option(..., help="Request log JSONL (rotated copies are read too)."),
    tenant: str = typer.Option(None, help="Only this tenant's traffic (a per-tenant large_share mapping)."),
    artifact: Path = typer.Option(None, help="Artifact to recalibrate (default: bundled)."),
    out: Path = typer.Option(None, help="Write the recalibrated artifact here (default: print only)."),
) -> None:
    """Map large_share to thresholds on your own logged prompts (no labels needed)."""
    import numpy as np

    from app.routing.classifier import RouterClassifier
    from app.routing.datasets import embed_texts_cached
    from app.routing.request_log_data import read_log

    clf = RouterClassifier.load(artifact)
    prompts = read_log(str(from_request_log), tenant)
    if len(prompts) < 50:
        console.print(f"only {len(prompts)} routed prompts in the log; need at least 50")
        raise typer.Exit(1)
    texts = [p.text for p in prompts]
    scores = clf.score_many(texts, embed_texts_cached(texts, "request-log"), [p.turns for p in prompts])
    from app.routing.calibration import share_at, threshold_for_share

    for share in (0.1, 0.2, 0.3, 0.4, 0.5, 0.6):
        t = threshold_for_share(scores, share)
        console.print(f"large_share {share:.1f} -> threshold {t:.4f} (bundled calibration: "
                      f"{share_at(clf.calibration_scores, t):.2f})" if clf.calibration_scores else
                      f"large_share {share:.1f} -> threshold {t:.4f}")
    console.print(f"artifact threshold {clf.threshold:.4f} sends {np.mean(scores >= clf.threshold):.2f} "
                  "of this traffic")
    if out is not None:
        data = json.loads((artifact or clf.default_path).read_text())
        data["calibration_scores"] = [round(float(s), 6) for s in np.sort(scores)]
        data.setdefault("metadata", {})["calibration"] = {"source": "request log", "prompts": len(scores),
                                                           "tenant": tenant}
        out.write_text(json.dumps(data, separators=(",", ":")))
        console.print(f"wrote {out}")
