"""`llmgw eval SUITE.yaml --prompt name@version`: run a regression suite through a gateway, score it with
deterministic checks and the LLM judge, write a JSON report, exit 1 on a regression against a baseline."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import typer
import yaml
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from app.evaluation.judge import Judge
from app.evaluation.runner import compare, run_suite
from app.evaluation.settings import JudgeConfig
from app.evaluation.suite import load_suite, parse_prompt_spec

console = Console(stderr=True)


def load_judge_config(path: Path) -> JudgeConfig:
    """A bare JudgeConfig, an ``evaluation:`` block, a gateway config or a Serve config."""
    data: Any = yaml.safe_load(path.read_text()) or {}
    if "applications" in data:
        data = data["applications"][0].get("args", {})
    data = data.get("evaluation", data)
    data = data.get("judge", data)
    if not data:
        raise typer.BadParameter(f"{path} holds no judge configuration", param_hint="--judge-config")
    return JudgeConfig.model_validate(data)


def eval_command(
    suite_file: Path = typer.Argument(..., exists=True, dir_okay=False, help="Suite YAML."),
    prompt: str = typer.Option(None, help="NAME@VERSION (or NAME@LABEL) to evaluate; default: the suite's."),
    route: str = typer.Option(None, help="Model / route to send (auto, small, large, ...); default: the suite's."),
    baseline: Path = typer.Option(None, exists=True, dir_okay=False, help="An earlier report to compare with."),
    url: str = typer.Option("http://127.0.0.1:8000", help="Gateway base URL."),
    out: Path = typer.Option(None, help="Write the JSON report here."),
    judge_config: Path = typer.Option(None, exists=True, dir_okay=False,
                                      help="Judge model (JudgeConfig, or a gateway config's evaluation.judge)."),
    tenant: str = typer.Option(None, help="x-llmgw-tenant header (gateways without auth)."),
    api_key_env: str = typer.Option(None, help="Env var holding the gateway API key (never pass keys inline)."),
    concurrency: int = typer.Option(2, min=1),
    judge_tolerance: float = typer.Option(0.05, help="Allowed drop of the mean judge score vs the baseline."),
    as_json: bool = typer.Option(False, "--json", help="Print the report JSON on stdout."),
) -> None:
    """Run a regression suite; exit 1 on a regression against --baseline."""
    try:
        suite = load_suite(suite_file)
        ref = parse_prompt_spec(prompt or suite.prompt or "")
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    judge = None
    if suite.judge is not None:
        if judge_config is None:
            raise typer.BadParameter("the suite has a judge section: pass --judge-config", param_hint="--judge-config")
        judge = Judge(load_judge_config(judge_config))
    headers = {"x-llmgw-tenant": tenant} if tenant else {}
    if api_key_env:
        key = os.environ.get(api_key_env)
        if not key:
            raise typer.BadParameter(f"${api_key_env} is not set", param_hint="--api-key-env")
        headers["Authorization"] = f"Bearer {key}"
    report = asyncio.run(_run(suite, url, ref, route, judge, headers, concurrency))
    if baseline is not None:
        report["comparison"] = compare(report, json.loads(baseline.read_text()), judge_tolerance=judge_tolerance)
    if out is not None:
        out.write_text(json.dumps(report, indent=2, ensure_ascii=False))
    _print(report)
    if as_json:
        typer.echo(json.dumps(report, ensure_ascii=False))
    if report.get("comparison", {}).get("regression"):
        raise typer.Exit(1)


async def _run(suite, url, ref, route, judge, headers, concurrency) -> dict[str, Any]:
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task(suite.name, total=len(suite.cases))
        try:
            return await run_suite(suite, base_url=url, prompt=ref, model=route, judge=judge, headers=headers,
                                   concurrency=concurrency, on_case=lambda _: progress.advance(task))
        finally:
            if judge is not None:
                await judge.aclose()


def _print(report: dict[str, Any]) -> None:
    table = Table("case", "status", "passed", "judge", "failures", title=f"{report['suite']} · {report['prompt']} · "
                  f"{report['model']}")
    for c in report["cases"]:
        score = c["judge"].get("score") if c["judge"] else None
        table.add_row(c["id"], str(c["status"]), "yes" if c["passed"] else "[red]no[/red]",
                      "-" if score is None else f"{score:.2f}", "; ".join(c["failures"])[:120])
    console.print(table)
    s = report["summary"]
    judge = "-" if s["judge_mean"] is None else f"{s['judge_mean']:.3f} ({s['judged']} judged)"
    console.print(f"passed {s['passed']}/{s['cases']} ({s['pass_rate']:.1%}), judge mean {judge}, "
                  f"errors {s['errors']}, {report['duration_s']} s")
    comparison = report.get("comparison")
    if comparison:
        verdict = "[red]REGRESSION[/red]" if comparison["regression"] else "[green]no regression[/green]"
        console.print(f"vs baseline {comparison['baseline']['prompt']}: {verdict}")
        for reason in comparison["reasons"]:
            console.print(f"  - {reason}")
        if comparison["newly_failing"]:
            console.print(f"  newly failing: {', '.join(comparison['newly_failing'])}")
