"""`llmgw prompts ...`: the registry and experiments through a gateway's admin API (``--url``), or straight
against Redis (``--redis-url``, same handlers, for operators and tests)."""

from __future__ import annotations

import asyncio
import datetime
import getpass
import json
from pathlib import Path
from typing import Any

import httpx
import typer
import yaml
from rich.console import Console
from rich.syntax import Syntax
from rich.table import Table

from app.caching.cli import ADMIN, read_admin_key

prompts_app = typer.Typer(no_args_is_help=True)
experiment_app = typer.Typer(no_args_is_help=True, help="A/B experiments and shadows: start, status, stop, list.")
prompts_app.add_typer(experiment_app, name="experiment")
console = Console()

URL = typer.Option("http://127.0.0.1:8000", help="Gateway base URL (admin API).")
REDIS = typer.Option(None, "--redis-url", envvar="LLMGW_REDIS__URL",
                     help="Talk to Redis directly instead of a gateway (e.g. redis://127.0.0.1:6379/0).")
PREFIX = typer.Option("llmgw:prompts", help="Registry key prefix (with --redis-url).")
TENANT = typer.Option(None, help="The tenant's namespace.")
GLOBAL = typer.Option(False, "--global", help="The shared global namespace.")
AS_JSON = typer.Option(False, "--json", help="Print the raw JSON answer.")


class AdminClient:
    """One admin call: HTTP to a gateway, or the same dispatcher in-process against Redis."""

    def __init__(self, url: str, redis_url: str | None, prefix: str, key_file: Path | None) -> None:
        self.url, self.redis_url, self.prefix, self.key_file = url.rstrip("/"), redis_url, prefix, key_file

    def call(self, method: str, path: str, *, query: dict[str, Any] | None = None,
             body: dict[str, Any] | None = None) -> dict[str, Any]:
        query = {k: v for k, v in (query or {}).items() if v is not None}
        if self.redis_url:
            return asyncio.run(self._local(method, path, query, body))
        key = read_admin_key(self.key_file)
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        resp = httpx.request(method, self.url + path, params=query, json=body, headers=headers, timeout=30)
        try:
            data = resp.json()
        except ValueError:
            data = {"error": {"message": resp.text[:500], "type": "http_error"}}
        if resp.status_code >= 400:
            _fail(data)
        return data

    async def _local(self, method: str, path: str, query: dict, body: dict | None) -> dict[str, Any]:
        from app.api.prompts import PromptAdmin, dispatch
        from app.errors import GatewayError
        from app.prompts.experiment_store import Experiments
        from app.prompts.redis_store import RedisPromptStore
        from app.prompts.registry import PromptRegistry
        from app.prompts.settings import PromptsConfig

        store = RedisPromptStore.from_url(self.redis_url or "", self.prefix)
        registry = PromptRegistry(store, PromptsConfig(key_prefix=self.prefix))
        try:
            return await dispatch(PromptAdmin(registry, Experiments(registry)), method, path, query, body)
        except GatewayError as err:
            _fail(err.to_dict())
        finally:
            await store.aclose()
        return {}


def _fail(data: dict[str, Any]) -> None:
    console.print_json(json.dumps(data))
    raise typer.Exit(1)


def _scope(tenant: str | None, is_global: bool) -> dict[str, Any]:
    if bool(tenant) == is_global:
        raise typer.BadParameter("name the namespace: --tenant NAME or --global", param_hint="--tenant/--global")
    return {"global": True} if is_global else {"tenant": tenant}


def _client(url: str, redis_url: str | None, prefix: str, key_file: Path | None) -> AdminClient:
    return AdminClient(url, redis_url, prefix, key_file)


def _load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())  # YAML is a superset of JSON


def _author() -> str:
    try:
        return getpass.getuser()
    except Exception:
        return ""


def _out(data: dict[str, Any]) -> None:
    console.print_json(json.dumps(data, default=str))


@prompts_app.command("create")
def create(name: str, file: Path = typer.Option(..., exists=True, dir_okay=False, help="Template YAML/JSON."),
           note: str = typer.Option("", help="What changed."), author: str = typer.Option(None),
           label: list[str] = typer.Option(None, help="Labels to point at the new version (repeatable)."),
           tenant: str = TENANT, is_global: bool = GLOBAL, url: str = URL, redis_url: str = REDIS,
           prefix: str = PREFIX, admin_key_file: Path = ADMIN) -> None:
    """Add a new immutable version of NAME (creates the prompt at version 1)."""
    body = {**_scope(tenant, is_global), "name": name, "template": _load(file), "note": note,
            "author": author or _author(), "labels": label or []}
    _out(_client(url, redis_url, prefix, admin_key_file).call("POST", "/admin/prompts", body=body))


@prompts_app.command("list")
def list_(tenant: str = TENANT, is_global: bool = GLOBAL, url: str = URL, redis_url: str = REDIS,
          prefix: str = PREFIX, admin_key_file: Path = ADMIN, as_json: bool = AS_JSON) -> None:
    """Prompts visible to the tenant (its own, then global ones)."""
    data = _client(url, redis_url, prefix, admin_key_file).call("GET", "/admin/prompts",
                                                                query=_scope(tenant, is_global))
    if as_json:
        return _out(data)
    table = Table("name", "namespace", "latest", "labels")
    for p in data["data"]:
        table.add_row(p["name"], p["namespace"], str(p["latest"]),
                      ", ".join(f"{k}→{v}" for k, v in sorted(p["labels"].items())))
    console.print(table)


@prompts_app.command("show")
def show(name: str, version: int = typer.Option(None), label: str = typer.Option(None),
         tenant: str = TENANT, is_global: bool = GLOBAL, url: str = URL, redis_url: str = REDIS,
         prefix: str = PREFIX, admin_key_file: Path = ADMIN, as_json: bool = AS_JSON) -> None:
    """Versions (author, time, note) and labels; with --version/--label the template itself."""
    query = {**_scope(tenant, is_global), "version": version, "label": label}
    data = _client(url, redis_url, prefix, admin_key_file).call("GET", f"/admin/prompts/{name}", query=query)
    if as_json:
        return _out(data)
    labels = {}
    for lb, v in data["labels"].items():
        labels.setdefault(v, []).append(lb)
    table = Table("version", "labels", "author", "created", "note", title=f"{name} ({data['namespace']})")
    for v in data["versions"]:
        when = datetime.datetime.fromtimestamp(v["created_at"], datetime.UTC).strftime("%Y-%m-%d %H:%M:%S")
        table.add_row(str(v["version"]), ", ".join(sorted(labels.get(v["version"], []))), v["author"], when,
                      v["note"])
    console.print(table)
    if "selected" in data:
        console.print(Syntax(yaml.safe_dump(data["selected"]["template"], sort_keys=False), "yaml"))


@prompts_app.command("diff")
def diff(name: str, a: int, b: int, tenant: str = TENANT, is_global: bool = GLOBAL, url: str = URL,
         redis_url: str = REDIS, prefix: str = PREFIX, admin_key_file: Path = ADMIN) -> None:
    """Unified diff between versions A and B."""
    data = _client(url, redis_url, prefix, admin_key_file).call(
        "GET", f"/admin/prompts/{name}/diff", query={**_scope(tenant, is_global), "a": a, "b": b})
    text = data["diff"] or f"{name}@{a} and {name}@{b} are identical\n"
    console.print(Syntax(text, "diff"))


@prompts_app.command("label")
def label_cmd(name: str, label: str, version: int = typer.Argument(None), delete: bool = typer.Option(False),
              tenant: str = TENANT, is_global: bool = GLOBAL, url: str = URL, redis_url: str = REDIS,
              prefix: str = PREFIX, admin_key_file: Path = ADMIN) -> None:
    """Point LABEL at VERSION (or --delete it)."""
    client = _client(url, redis_url, prefix, admin_key_file)
    scope = _scope(tenant, is_global)
    if delete:
        return _out(client.call("DELETE", f"/admin/prompts/{name}/labels/{label}", query=scope))
    if version is None:
        raise typer.BadParameter("give the VERSION to point the label at (or --delete)")
    _out(client.call("PUT", f"/admin/prompts/{name}/labels/{label}",
                     body={**scope, "version": version, "author": _author()}))


@prompts_app.command("promote")
def promote(name: str, version: int, label: str = typer.Option("production"), tenant: str = TENANT,
            is_global: bool = GLOBAL, url: str = URL, redis_url: str = REDIS, prefix: str = PREFIX,
            admin_key_file: Path = ADMIN) -> None:
    """Point the production label (or --label) at VERSION; every replica serves it within 1 s."""
    _out(_client(url, redis_url, prefix, admin_key_file).call(
        "POST", f"/admin/prompts/{name}/promote",
        body={**_scope(tenant, is_global), "version": version, "label": label, "author": _author()}))


@prompts_app.command("rollback")
def rollback(name: str, label: str = typer.Option("production"), tenant: str = TENANT, is_global: bool = GLOBAL,
             url: str = URL, redis_url: str = REDIS, prefix: str = PREFIX, admin_key_file: Path = ADMIN) -> None:
    """Point the label back at the version it pointed to before."""
    _out(_client(url, redis_url, prefix, admin_key_file).call(
        "POST", f"/admin/prompts/{name}/rollback",
        body={**_scope(tenant, is_global), "label": label, "author": _author()}))


@prompts_app.command("delete")
def delete(name: str, version: int, tenant: str = TENANT, is_global: bool = GLOBAL, url: str = URL,
           redis_url: str = REDIS, prefix: str = PREFIX, admin_key_file: Path = ADMIN) -> None:
    """Delete VERSION (refused with 409 while a label points at it)."""
    _out(_client(url, redis_url, prefix, admin_key_file).call(
        "DELETE", f"/admin/prompts/{name}/versions/{version}", query=_scope(tenant, is_global)))


@prompts_app.command("render")
def render_cmd(name: str, version: int = typer.Option(None), label: str = typer.Option(None),
               var: list[str] = typer.Option(None, help="KEY=VALUE (VALUE parsed as YAML: 3, true, [a, b])."),
               tenant: str = TENANT, is_global: bool = GLOBAL, url: str = URL, redis_url: str = REDIS,
               prefix: str = PREFIX, admin_key_file: Path = ADMIN) -> None:
    """Show the messages a prompt_ref would render (no model call)."""
    variables = {}
    for item in var or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise typer.BadParameter(f"--var {item!r}: expected KEY=VALUE")
        variables[key] = yaml.safe_load(value) if value else ""
    _out(_client(url, redis_url, prefix, admin_key_file).call(
        "POST", f"/admin/prompts/{name}/render",
        body={**_scope(tenant, is_global), "version": version, "label": label, "variables": variables}))


def parse_variant(text: str) -> dict[str, Any]:
    """``NAME:WEIGHT[:version=N][:label=L][:model=M]`` -> a variant."""
    name, _, rest = text.partition(":")
    weight, _, opts = rest.partition(":")
    try:
        variant: dict[str, Any] = {"name": name, "weight": float(weight)}
    except ValueError:
        raise typer.BadParameter(f"--variant {text!r}: NAME:WEIGHT[:version=N][:label=L][:model=M]") from None
    for opt in filter(None, opts.split(":")):
        key, _, value = opt.partition("=")
        if key not in ("version", "label", "model"):
            raise typer.BadParameter(f"--variant {text!r}: unknown option {key!r}")
        variant[key] = int(value) if key == "version" else value
    return variant


def parse_shadow(text: str) -> dict[str, Any]:
    """``version=N|label=L|model=M,sample=0.1[,budget=5]`` -> a shadow spec."""
    spec: dict[str, Any] = {}
    for opt in filter(None, text.split(",")):
        key, _, value = opt.partition("=")
        if key == "version":
            spec["version"] = int(value)
        elif key in ("label", "model"):
            spec[key] = value
        elif key == "sample":
            spec["sample_rate"] = float(value)
        elif key == "budget":
            spec["budget_usd"] = float(value)
        else:
            raise typer.BadParameter(f"--shadow {text!r}: unknown option {key!r}")
    return spec


@experiment_app.command("start")
def experiment_start(
    name: str = typer.Option(None), prompt: str = typer.Option(None),
    file: Path = typer.Option(None, exists=True, dir_okay=False, help="Experiment spec YAML (options override)."),
    key: str = typer.Option(None, help="user | tenant | request"), label: str = typer.Option(None),
    variant: list[str] = typer.Option(None, help="NAME:WEIGHT[:version=N][:label=L][:model=M] (repeatable)."),
    shadow: str = typer.Option(None, help="version=N|label=L|model=M,sample=0.1[,budget=5]"),
    tenant: str = TENANT, is_global: bool = GLOBAL, url: str = URL, redis_url: str = REDIS,
    prefix: str = PREFIX, admin_key_file: Path = ADMIN,
) -> None:
    """Split a prompt's traffic between variants (and/or shadow a candidate)."""
    spec: dict[str, Any] = dict(_load(file)) if file else {}
    for k, v in (("name", name), ("prompt", prompt), ("key", key), ("label", label)):
        if v is not None:
            spec[k] = v
    if variant:
        spec["variants"] = [parse_variant(v) for v in variant]
    if shadow:
        spec["shadow"] = parse_shadow(shadow)
    _out(_client(url, redis_url, prefix, admin_key_file).call(
        "POST", "/admin/experiments", body={**_scope(tenant, is_global), **spec, "author": _author()}))


def print_status(data: dict[str, Any]) -> None:
    exp = data["experiment"]
    console.print(f"[bold]{exp['name']}[/bold] on prompt {exp['prompt']} ({exp['label']}), key {exp['key']}: "
                  f"{exp['status']}")
    table = Table("variant", "target", "requests", "latency mean", "p50", "p95", "tokens in/out", "cost USD",
                  "errors", "guardrail", "judge", "judged")
    targets = {v["name"]: f"w={v['weight']:g} " + _describe(v) for v in exp["variants"]}
    if exp.get("shadow"):
        targets["shadow"] = f"{exp['shadow']['sample_rate']:.0%} " + _describe(exp["shadow"])
    for name, s in data["variants"].items():
        def pct(x):
            return "-" if x is None else f"{x:.1%}"
        table.add_row(name, targets.get(name, ""), str(s["requests"]),
                      "-" if s["latency_ms_mean"] is None else f"{s['latency_ms_mean']:.0f} ms",
                      s["latency_p50"] or "-", s["latency_p95"] or "-",
                      f"{s['prompt_tokens']}/{s['completion_tokens']}", f"{s['cost_usd']:.4f}",
                      pct(s["error_rate"]), pct(s["guardrail_rate"]),
                      "-" if s["judge_score_mean"] is None else f"{s['judge_score_mean']:.3f}", str(s["judged"]))
    console.print(table)
    if "shadow_spent_usd" in data:
        console.print(f"shadow spent {data['shadow_spent_usd']:.4f} of {exp['shadow']['budget_usd']:.2f} USD")


def _describe(target: dict[str, Any]) -> str:
    parts = [f"v{target['version']}" if target.get("version") else (target.get("label") or "")]
    if target.get("model"):
        parts.append(f"model={target['model']}")
    return " ".join(p for p in parts if p) or "(the experiment's label)"


@experiment_app.command("status")
def experiment_status(name: str, tenant: str = TENANT, is_global: bool = GLOBAL, url: str = URL,
                      redis_url: str = REDIS, prefix: str = PREFIX, admin_key_file: Path = ADMIN,
                      as_json: bool = AS_JSON) -> None:
    """Per variant: requests, latency, tokens, cost, error and guardrail rates, judge scores."""
    data = _client(url, redis_url, prefix, admin_key_file).call(
        "GET", f"/admin/experiments/{name}", query=_scope(tenant, is_global))
    _out(data) if as_json else print_status(data)


@experiment_app.command("stop")
def experiment_stop(name: str, tenant: str = TENANT, is_global: bool = GLOBAL, url: str = URL,
                    redis_url: str = REDIS, prefix: str = PREFIX, admin_key_file: Path = ADMIN) -> None:
    """Stop the experiment (traffic goes back to the label); prints its final figures."""
    print_status(_client(url, redis_url, prefix, admin_key_file).call(
        "POST", f"/admin/experiments/{name}/stop", body=_scope(tenant, is_global)))


@experiment_app.command("list")
def experiment_list(tenant: str = TENANT, is_global: bool = GLOBAL, url: str = URL, redis_url: str = REDIS,
                    prefix: str = PREFIX, admin_key_file: Path = ADMIN) -> None:
    _out(_client(url, redis_url, prefix, admin_key_file).call("GET", "/admin/experiments",
                                                              query=_scope(tenant, is_global)))
