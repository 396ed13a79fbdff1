"""``llmgw batch``: submit a JSONL file as a batch (optionally wait with a progress bar), status, results, cancel.

Talks to a running gateway with the official ``openai`` SDK, exactly as any client would.
"""

from __future__ import annotations

import functools
import json
import os
import sys
import time
from pathlib import Path

import typer

batch_app = typer.Typer(help="OpenAI-compatible batches on a running gateway.", no_args_is_help=True)
TERMINAL = {"completed", "failed", "expired", "cancelled"}

URL = typer.Option("http://127.0.0.1:8000", "--url", envvar="LLMGW_URL", help="Gateway base URL.")
KEY = typer.Option(None, "--api-key", envvar="LLMGW_API_KEY", help="API key (default: none, auth off).")
TENANT = typer.Option(None, "--tenant", help="Tenant header when auth is off.")


def _client(url: str, api_key: str | None, tenant: str | None):
    from openai import OpenAI

    headers = {"x-llmgw-tenant": tenant} if tenant else None
    return OpenAI(base_url=f"{url.rstrip('/')}/v1", api_key=api_key or os.environ.get("OPENAI_API_KEY") or "local",
                  default_headers=headers, max_retries=2)


def _api_errors(command):
    """An error answer (e.g. 404 ``batch_lane_disabled``) as one line on stderr and exit 1, not a traceback."""

    @functools.wraps(command)
    def run(*args, **kwargs):
        from openai import APIConnectionError, APIStatusError

        try:
            return command(*args, **kwargs)
        except APIStatusError as exc:
            body = exc.body if isinstance(exc.body, dict) else {}
            err = body.get("error", body) if isinstance(body.get("error", body), dict) else {}
            typer.echo(f"error {exc.status_code} {err.get('code') or ''}: {err.get('message') or exc.message}",
                       err=True)
        except APIConnectionError as exc:
            typer.echo(f"error: cannot reach the gateway ({exc.message})", err=True)
        raise typer.Exit(1)

    return run


def _endpoint_of(path: Path) -> str:
    with path.open("rb") as f:
        for raw in f:
            if raw.strip():
                try:
                    return json.loads(raw).get("url") or "/v1/chat/completions"
                except (json.JSONDecodeError, AttributeError):
                    break
    return "/v1/chat/completions"


def _summary(b) -> str:
    c = b.request_counts
    counts = f"{c.completed}/{c.total} completed, {c.failed} failed" if c else ""
    return f"{b.id}  {b.status}  {counts}"


def _wait(client, batch_id: str, poll_s: float) -> object:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()) as bar:
        task = bar.add_task("validating", total=None)
        while True:
            b = client.batches.retrieve(batch_id)
            c = b.request_counts
            if c and c.total:
                bar.update(task, total=c.total, completed=c.completed + c.failed, description=b.status)
            else:
                bar.update(task, description=b.status)
            if b.status in TERMINAL:
                return b
            time.sleep(poll_s)


@batch_app.command("submit")
@_api_errors
def submit(file: Path = typer.Argument(..., exists=True, dir_okay=False, help="JSONL: {custom_id, method, url, body}"),
           wait: bool = typer.Option(False, "--wait", help="Poll with a progress bar until the batch ends."),
           endpoint: str = typer.Option(None, help="Default: the url of the file's first line."),
           window: str = typer.Option("24h", "--completion-window"),
           poll_s: float = typer.Option(1.0, "--poll"),
           url: str = URL, api_key: str = KEY, tenant: str = TENANT) -> None:
    """Upload FILE and create a batch; with --wait, follow it to the end and print where the results are."""
    client = _client(url, api_key, tenant)
    with file.open("rb") as f:
        uploaded = client.files.create(file=(file.name, f), purpose="batch")
    b = client.batches.create(input_file_id=uploaded.id, endpoint=endpoint or _endpoint_of(file),
                              completion_window=window)
    typer.echo(_summary(b))
    if not wait:
        return
    b = _wait(client, b.id, poll_s)
    typer.echo(_summary(b))
    for e in (b.errors.data if b.errors and b.errors.data else []):
        typer.echo(f"  line {e.line}: {e.code}: {e.message}", err=True)
    if b.status != "completed":
        raise typer.Exit(1)


@batch_app.command("status")
@_api_errors
def status(batch_id: str, url: str = URL, api_key: str = KEY, tenant: str = TENANT) -> None:
    """Print a batch object (JSON)."""
    b = _client(url, api_key, tenant).batches.retrieve(batch_id)
    typer.echo(b.model_dump_json(indent=2))


@batch_app.command("results")
@_api_errors
def results(batch_id: str, errors: bool = typer.Option(False, "--errors", help="The error file instead."),
            out: Path = typer.Option(None, "--out", help="Write to this file (default: stdout)."),
            url: str = URL, api_key: str = KEY, tenant: str = TENANT) -> None:
    """Download a batch's output (or error) file as JSONL."""
    client = _client(url, api_key, tenant)
    b = client.batches.retrieve(batch_id)
    fid = b.error_file_id if errors else b.output_file_id
    if not fid:
        typer.echo(f"batch {batch_id} ({b.status}) has no {'error' if errors else 'output'} file", err=True)
        raise typer.Exit(1)
    data = client.files.content(fid).content
    if out is None:
        sys.stdout.buffer.write(data)
    else:
        out.write_bytes(data)
        typer.echo(f"{len(data.splitlines())} lines -> {out}")


@batch_app.command("cancel")
@_api_errors
def cancel(batch_id: str, url: str = URL, api_key: str = KEY, tenant: str = TENANT) -> None:
    """Cancel a batch (lines not started are never run nor billed)."""
    typer.echo(_summary(_client(url, api_key, tenant).batches.cancel(batch_id)))
