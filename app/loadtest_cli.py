"""`llmgw loadtest SCENARIO`: run a locust scenario headless against a gateway and print the summary."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

REPO_ROOT = Path(__file__).resolve().parents[1]


def _runner():
    """Import ``loadtests.run`` from the repository (it is not part of the installed package)."""
    if not (REPO_ROOT / "loadtests" / "run.py").exists():
        raise typer.BadParameter(f"loadtests/ not found next to {REPO_ROOT / 'app'}: run from a source checkout")
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    from loadtests import run

    return run


def loadtest_app(
    scenario: str = typer.Argument(..., help="chat | streaming | cache-heavy | tenants | burst | long-prompts | fault"),
    host: str = typer.Option("http://127.0.0.1:8000", help="Gateway base URL."),
    users: int = typer.Option(10, help="Concurrent users (peak users for burst)."),
    duration: int = typer.Option(60, help="Run time in seconds."),
    spawn_rate: float = typer.Option(None, help="Users started per second (default: all at once)."),
    out: Path = typer.Option(None, help="Report folder (default reports/loadtest/<scenario>-<time>)."),
) -> None:
    """Run a locust scenario headless; writes CSV + HTML reports and prints req/s, latency, errors, TTFT, cache."""
    run = _runner()
    if scenario not in run.SCENARIOS:
        raise typer.BadParameter(f"unknown scenario {scenario!r}; choose from {', '.join(run.SCENARIOS)}")
    try:
        summary, out_dir = run.run_scenario(scenario, host, users, duration, out, spawn_rate)
    except RuntimeError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from exc
    typer.echo(run.format_summary(scenario, summary))
    typer.echo(f"reports: {out_dir}")
