"""`llmgw keys create|list|show|update|revoke|rotate` and `llmgw usage`: the admin API over HTTP.

The admin key comes from ``$LLMGW_ADMIN_KEY``, else ``.cache/admin_key`` (what ``make run`` writes);
never from a command-line option (it would show in ``ps`` and shell history). A new key is
printed once, at creation or rotation: store it then.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from typing import Any

import httpx
import typer
from rich.console import Console
from rich.table import Table

from app.caching.cli import read_admin_key

keys_app = typer.Typer(no_args_is_help=True, help="Create, list, show, update, revoke and rotate API keys.")
console = Console()
URL = typer.Option(os.environ.get("LLMGW_URL", "http://127.0.0.1:8000"), help="Gateway base URL ($LLMGW_URL).")
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd]?)$")


def duration_s(text: str) -> float:
    """``90``, ``90s``, ``15m``, ``12h``, ``30d`` -> seconds."""
    m = _DURATION.match(text.strip())
    if not m:
        raise typer.BadParameter(f"not a duration: {text!r} (e.g. 3600, 15m, 12h, 30d)")
    return float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86_400}[m.group(2)]


def call(method: str, url: str, path: str, **kw) -> dict[str, Any]:
    key = read_admin_key(None)
    if not key:
        raise typer.BadParameter("no admin key: set $LLMGW_ADMIN_KEY or run the gateway with `make run` "
                                 "(it writes .cache/admin_key)")
    headers = {"Authorization": f"Bearer {key}", **kw.pop("headers", {})}
    try:
        resp = httpx.request(method, f"{url}{path}", headers=headers, timeout=30, **kw)
    except httpx.HTTPError as exc:
        console.print(f"[red]cannot reach {url}: {type(exc).__name__}[/red]")
        raise typer.Exit(2) from None
    data = resp.json() if resp.content else {}
    if resp.status_code >= 400:
        err = data.get("error", {}) if isinstance(data, dict) else {}
        console.print(f"[red]{resp.status_code} {err.get('code') or ''}: {err.get('message') or resp.text}[/red]")
        raise typer.Exit(1)
    return data


def _limits(rpm, tpm, budget_daily, budget_monthly) -> dict[str, Any]:
    return {k: v for k, v in {"rpm": rpm, "tpm": tpm, "budget_daily_usd": budget_daily,
                              "budget_monthly_usd": budget_monthly}.items() if v is not None}


def _show_secret(data: dict[str, Any]) -> None:
    console.print(f"[bold]key id[/bold] {data['id']}  tenant {data['tenant']}")
    console.print(f"[bold yellow]{data['key']}[/bold yellow]")
    console.print("This key is shown once: store it now (the gateway keeps only its hash).")


@keys_app.command("create")
def create(tenant: str = typer.Option(...), name: str = typer.Option(""),
           model: list[str] = typer.Option([], "--model", "-m", help="Allowed model or glob; '*' = all. Repeat."),
           rpm: int = typer.Option(None), tpm: int = typer.Option(None),
           budget_daily: float = typer.Option(None, help="USD per day."),
           budget_monthly: float = typer.Option(None, help="USD per month."),
           expires_in: str = typer.Option(None, help="e.g. 30d, 12h."), url: str = URL) -> None:
    """A new key (deny by default: without --model it may call no model)."""
    body = {"tenant": tenant, "name": name, "models": model, **_limits(rpm, tpm, budget_daily, budget_monthly)}
    if expires_in:
        body["expires_in_s"] = duration_s(expires_in)
    if not model:
        console.print("[yellow]no --model given: this key may call no model (use -m '*' for all)[/yellow]")
    _show_secret(call("POST", url, "/admin/keys", json=body))


@keys_app.command("list")
def list_keys(tenant: str = typer.Option(None), url: str = URL) -> None:
    """Every key (or a tenant's): limits, models, status; never a secret."""
    data = call("GET", url, "/admin/keys", params={"tenant": tenant} if tenant else None)["data"]
    table = _table("id", "tenant", "name", "models", "rpm", "tpm", "$/day", "$/month", "status")
    for k in data:
        table.add_row(k["id"], k["tenant"], k["name"], ",".join(k["models"]) or "(none)", _n(k["rpm"]),
                      _n(k["tpm"]), _n(k["budget_daily_usd"]), _n(k["budget_monthly_usd"]), k["status"])
    console.print(table)


@keys_app.command("show")
def show(key_id: str, url: str = URL) -> None:
    """One key record as JSON."""
    console.print_json(json.dumps(call("GET", url, f"/admin/keys/{key_id}")))


@keys_app.command("update")
def update(key_id: str, name: str = typer.Option(None),
           model: list[str] = typer.Option(None, "--model", "-m", help="Replaces the allowed models. Repeat."),
           rpm: int = typer.Option(None), tpm: int = typer.Option(None), budget_daily: float = typer.Option(None),
           budget_monthly: float = typer.Option(None),
           clear: list[str] = typer.Option([], help="Remove a limit: rpm, tpm, budget_daily_usd, ... Repeat."),
           url: str = URL) -> None:
    """Change a key's name, models or limits (only what is given; --clear removes a limit)."""
    body: dict[str, Any] = _limits(rpm, tpm, budget_daily, budget_monthly)
    if name is not None:
        body["name"] = name
    if model:
        body["models"] = model
    body.update({field: None for field in clear})
    console.print_json(json.dumps(call("PATCH", url, f"/admin/keys/{key_id}", json=body)))


@keys_app.command("revoke")
def revoke(key_id: str, url: str = URL) -> None:
    """Revoke a key: refused by every replica within a second; the record stays for audit and usage."""
    data = call("DELETE", url, f"/admin/keys/{key_id}")
    console.print(f"{data['id']}: {data['status']}")


@keys_app.command("rotate")
def rotate(key_id: str, overlap: str = typer.Option(None, help="How long the old key keeps working (e.g. 1h)."),
           idempotency_key: str = typer.Option(None, help="Repeat a rotate safely: the same value returns the "
                                                          "same new key."), url: str = URL) -> None:
    """A new secret for the same key record; the old one works until the overlap ends, then stops."""
    idem = idempotency_key or str(uuid.uuid4())
    body = {"overlap_s": duration_s(overlap)} if overlap else {}
    data = call("POST", url, f"/admin/keys/{key_id}/rotate", json=body, headers={"Idempotency-Key": idem})
    _show_secret(data)
    console.print(f"old key valid until {data['previous_valid_until']:.0f} (epoch s); idempotency key {idem}")


def usage(tenant: str = typer.Option(None), key: str = typer.Option(None, help="A key id."),
          period: str = typer.Option("day", help="day | month | YYYY-MM-DD | YYYY-MM"), url: str = URL) -> None:
    """Requests, tokens, spend, budget left and cache savings per tenant and key."""
    params = {k: v for k, v in {"tenant": tenant, "key": key, "period": period}.items() if v}
    data = call("GET", url, "/admin/usage", params=params)
    table = _table("owner", "id", "tenant", "requests", "tokens in", "tokens out", "spend $", "budget left $",
                   "saved by cache $", title=f"usage {data['period']} {data['label']} ({data['timezone']})")
    for r in data["data"]:
        table.add_row(r["owner"], r["id"], r["tenant"], str(r["requests"]), str(r["prompt_tokens"]),
                      str(r["completion_tokens"]), f"{r['spend_usd']:.6f}", _n(r["budget_left_usd"], "{:.6f}"),
                      f"{r['savings_usd']:.6f}")
    console.print(table)


def _table(*columns: str, title: str | None = None) -> Table:
    table = Table(title=title)
    for name in columns:
        table.add_column(name, no_wrap=name == "id")  # ids stay copy-pastable
    return table


def _n(value, fmt: str = "{}") -> str:
    return "-" if value is None else fmt.format(value)
