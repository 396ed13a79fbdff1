"""`llmgw canary ...`: run the configured canaries against a gateway on demand; serve a node's metrics."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import typer
import yaml

from app.observability.canary import record_expected, run_canaries
from app.observability.settings import CanarySettings

canary_app = typer.Typer(no_args_is_help=True)


@canary_app.callback()
def _group() -> None:
    """Canary requests: reference requests with known expected answers."""


def load_canary_settings(path: Path) -> CanarySettings:
    """Canary settings from a YAML file: a bare ``CanarySettings`` (``canaries: [...]``), an
    ``ObservabilityConfig`` (``canary: {...}``), a gateway config (``observability: {...}``) or a
    Serve config (``applications[0].args.observability``)."""
    data: Any = yaml.safe_load(path.read_text()) or {}
    if "applications" in data:
        data = data["applications"][0].get("args", {})
    if "observability" in data:
        data = data["observability"]
    if "canary" in data:
        data = data["canary"]
    return CanarySettings.model_validate(data)


async def _run_with_judge(url: str, canaries: list, timeout_s: float, judge_config: Path | None) -> list:
    if judge_config is None:
        return await run_canaries(url, canaries, timeout_s)
    from app.evaluation.cli import load_judge_config
    from app.evaluation.judge import Judge, canary_judge

    judge = Judge(load_judge_config(judge_config))
    try:
        return await run_canaries(url, canaries, timeout_s, judge=canary_judge(judge))
    finally:
        await judge.aclose()


@canary_app.command("run")
def run(
    url: str = typer.Option("http://127.0.0.1:8000", help="Gateway base URL."),
    config: Path = typer.Option(..., exists=True, dir_okay=False, help="YAML holding the canaries."),
    name: list[str] = typer.Option(None, help="Only these canaries (repeatable)."),
    as_json: bool = typer.Option(False, "--json", help="Print results as JSON lines."),
    record: Path = typer.Option(None, help="Write the canaries with 'exact' checks set to the answers seen."),
    judge_config: Path = typer.Option(None, exists=True, dir_okay=False,
                                      help="Judge model for judge_score checks (a JudgeConfig or a gateway config)."),
) -> None:
    """Run canaries once; exit code 1 if any deviates from its expectation."""
    settings = load_canary_settings(config)
    canaries = [c for c in settings.canaries if not name or c.name in name]
    if not canaries:
        raise typer.BadParameter("no canaries selected", param_hint="--config/--name")
    results = asyncio.run(_run_with_judge(url, canaries, settings.timeout_s, judge_config))
    for r in results:
        if as_json:
            typer.echo(json.dumps(r.to_dict()))
        else:
            mark = "OK  " if r.ok else "FAIL"
            detail = "; ".join(r.failures)
            typer.echo(f"{mark} {r.name:<24} {r.status} {r.latency_ms:8.1f} ms  {detail}")
    if record is not None:
        pinned = record_expected(results, canaries)
        out = settings.model_copy(update={"canaries": pinned}).model_dump(mode="json")
        record.write_text(yaml.safe_dump({"canary": out}, sort_keys=False))
        typer.echo(f"recorded expected answers to {record}")
    if not all(r.ok for r in results):
        raise typer.Exit(1)
