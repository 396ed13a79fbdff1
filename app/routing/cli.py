"""`llmgw router train|eval`: train the classifier and print its quality/cost curve."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
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


@router_app.command()
def train(
    out: Path = typer.Option(None, help="Artifact path (default: the bundled app/routing/artifacts/router-v1.json)."),
    kind: str = typer.Option("mlp", help="mlp | logreg"),
    seed: int = typer.Option(0),
    large_share: float = typer.Option(0.5, help="Default threshold sends about this share to the large pool."),
    by_source: bool = typer.Option(False, help="Hold out whole sources (subjects) instead of a stratified split."),
) -> None:
    """Train on ../shared/data/routing with a held-out split; write the versioned artifact."""
    from app.routing.classifier import DEFAULT_ARTIFACT
    from app.routing.train import train_router

    artifact, extra = train_router(kind=kind, seed=seed, large_share=large_share, by_group=by_source)
    print_report(extra["report"], f"held-out test split ({artifact['metadata']['split']['test']} prompts)")
    at = artifact["metadata"]["test"]["at_threshold"]
    console.print(f"default threshold {artifact['threshold']:.4f}: large share {at['large_share']:.2f}, "
                  f"accuracy {at['accuracy']:.3f}, PGR {at['pgr']:.3f}")
    target = out or DEFAULT_ARTIFACT
    target.write_text(json.dumps(artifact, separators=(",", ":")))
    console.print(f"wrote {target} ({target.stat().st_size // 1024} KiB, version {artifact['version']})")


@router_app.command("eval")
def evaluate(
    artifact: Path = typer.Option(None, help="Artifact to evaluate (default: bundled)."),
) -> None:
    """Print the quality/cost curve of an artifact on the held-out split it was trained with."""
    import numpy as np

    from app.routing.classifier import RouterClassifier
    from app.routing.evaluate import evaluate_router
    from app.routing.features import feature_matrix
    from app.routing.train import embed_cached, load_dataset, split_indices

    clf = RouterClassifier.load(artifact)
    data = load_dataset()
    split = clf.metadata.get("split", {})
    _, test = split_indices(data.groups, split.get("seed", 0), by_group=split.get("by_source", False))
    x = feature_matrix([data.prompts[i] for i in test], embed_cached(data.prompts, data.sha256)[test])
    scores = clf.score_features(x)
    print_report(evaluate_router(scores, data.small_ok[test], data.large_ok[test]), f"{clf.version} on {len(test)}")
    share = float(np.mean(scores >= clf.threshold))
    console.print(f"threshold {clf.threshold:.4f} sends {share:.2f} of these prompts to the large pool")
