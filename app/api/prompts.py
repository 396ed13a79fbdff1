"""Admin API of the prompt registry and experiments: plain async functions (registry + inputs -> dict).

Every call names its namespace explicitly: ``tenant: "<name>"`` or ``global: true`` (in the JSON body
or the query string), so nothing lands in the shared namespace by omission. The ingress maps routes
onto these one line each (docs/prompts.md lists them); errors are GatewayErrors (400/404/409).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from app.errors import ConflictError, InvalidRequestError, MethodNotAllowedError, NotFoundError
from app.prompts.experiment_store import Experiments
from app.prompts.models import check_version
from app.prompts.registry import PromptRegistry
from app.prompts.template import render

_TENANT = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def scope(data: Mapping[str, Any]) -> str | None:
    """The namespace a call addresses: a tenant name, or None for the global namespace."""
    is_global = data.get("global") in (True, "true", "1", 1)
    tenant = data.get("tenant")
    if is_global and tenant:
        raise InvalidRequestError("Give 'tenant' or 'global', not both.", param="tenant")
    if is_global:
        return None
    if not isinstance(tenant, str) or not _TENANT.match(tenant):
        raise InvalidRequestError("Name the namespace: 'tenant': '<tenant>' or 'global': true.", param="tenant")
    return tenant


def _str(data: Mapping[str, Any], key: str, default: str = "") -> str:
    value = data.get(key, default)
    if value is None:
        return default
    if not isinstance(value, str):
        raise InvalidRequestError(f"'{key}' must be a string.", param=key)
    return value


async def list_prompts(registry: PromptRegistry, query: Mapping[str, Any]) -> dict[str, Any]:
    return {"object": "list", "data": await registry.list_prompts(scope(query))}


async def create_prompt(registry: PromptRegistry, body: Mapping[str, Any]) -> dict[str, Any]:
    """A new version of ``name`` (version 1 creates the prompt); optional ``labels`` to set on it."""
    labels = body.get("labels") or []
    if not isinstance(labels, list):
        raise InvalidRequestError("'labels' must be a list of labels.", param="labels")
    pv = await registry.create(scope(body), body.get("name"), body.get("template"), author=_str(body, "author"),
                               note=_str(body, "note"), labels=labels)
    return {"name": pv.name, "namespace": pv.namespace, "version": pv.version, "labels": labels}


async def show_prompt(registry: PromptRegistry, name: str, query: Mapping[str, Any]) -> dict[str, Any]:
    """Versions (author, time, note), labels and the change log; with ``version``/``label``, that template."""
    tenant = scope(query)
    info = await registry.describe(tenant, name)
    if query.get("version") is not None or query.get("label") is not None:
        version = check_version(query["version"]) if query.get("version") is not None else None
        pv = await registry.get_version(tenant, name, version, query.get("label"))
        info["selected"] = {**pv.summary(), "template": pv.template.model_dump(exclude_none=True)}
    return info


async def diff_versions(registry: PromptRegistry, name: str, query: Mapping[str, Any]) -> dict[str, Any]:
    a, b = check_version(query.get("a")), check_version(query.get("b"))
    return {"name": name, "a": a, "b": b, "diff": await registry.diff(scope(query), name, a, b)}


async def set_label(registry: PromptRegistry, name: str, label: str, body: Mapping[str, Any]) -> dict[str, Any]:
    return await registry.set_label(scope(body), name, label, body.get("version"), by=_str(body, "author"))


async def _not_in_a_running_experiment(experiments: Experiments, tenant: str | None, name: str, what: str, *,
                                       version: int | None = None, label: str | None = None) -> None:
    """409 while a running experiment serves it: its share of traffic would turn into 404s."""
    running = await experiments.referencing(tenant, name, version=version, label=label)
    if running is not None:
        raise ConflictError(f"{what} of prompt '{name}' is used by the running experiment '{running}': stop it "
                            "first.", param="version" if version is not None else "label", code="used_by_experiment")


async def delete_label(admin: PromptAdmin, name: str, label: str, query: Mapping[str, Any]) -> dict[str, Any]:
    tenant = scope(query)
    await _not_in_a_running_experiment(admin.experiments, tenant, name, f"Label '{label}'", label=label)
    return await admin.registry.delete_label(tenant, name, label, by=_str(query, "author"))


async def promote(registry: PromptRegistry, name: str, body: Mapping[str, Any]) -> dict[str, Any]:
    return await registry.promote(scope(body), name, body.get("version"), label=body.get("label"),
                                  by=_str(body, "author"))


async def rollback(registry: PromptRegistry, name: str, body: Mapping[str, Any]) -> dict[str, Any]:
    return await registry.rollback(scope(body), name, label=body.get("label"), by=_str(body, "author"))


async def delete_version(admin: PromptAdmin, name: str, version: Any, query: Mapping[str, Any]) -> dict[str, Any]:
    """409 while a label points at it (the registry) or a running experiment serves it (here)."""
    tenant, number = scope(query), check_version(version)
    await _not_in_a_running_experiment(admin.experiments, tenant, name, f"Version {number}", version=number)
    return await admin.registry.delete_version(tenant, name, number, by=_str(query, "author"))


async def render_preview(registry: PromptRegistry, name: str, body: Mapping[str, Any]) -> dict[str, Any]:
    """The messages a ``prompt_ref`` would put before the client's (no model call)."""
    version = check_version(body["version"]) if body.get("version") is not None else None
    pv = await registry.get_version(scope(body), name, version, body.get("label"))
    variables = body.get("variables") or {}
    if not isinstance(variables, dict):
        raise InvalidRequestError("'variables' must be an object.", param="variables")
    return {"prompt": pv.ref, "messages": render(pv.template, variables)}


async def start_experiment(experiments: Experiments, body: Mapping[str, Any]) -> dict[str, Any]:
    spec = {k: v for k, v in body.items() if k not in ("tenant", "global", "author")}
    exp = await experiments.start(scope(body), spec, by=_str(body, "author"))
    return exp.model_dump()


async def list_experiments(experiments: Experiments, query: Mapping[str, Any]) -> dict[str, Any]:
    return {"object": "list", "data": await experiments.list(scope(query))}


async def experiment_status(experiments: Experiments, name: str, query: Mapping[str, Any]) -> dict[str, Any]:
    return await experiments.status(scope(query), name)


async def stop_experiment(experiments: Experiments, name: str, body: Mapping[str, Any]) -> dict[str, Any]:
    tenant = scope(body)
    await experiments.stop(tenant, name)
    return await experiments.status(tenant, name)


# ---- one dispatcher for every admin path (the ingress mounts it with one route per prefix) ------------
_NAME = r"(?P<name>[A-Za-z0-9][A-Za-z0-9_.-]*)"
_ROUTES: list[tuple[str, re.Pattern[str], Any]] = [
    (method, re.compile(f"^{pattern}$"), handler) for method, pattern, handler in (
        ("GET", "/admin/prompts", lambda a, m, q, b: list_prompts(a.registry, q)),
        ("POST", "/admin/prompts", lambda a, m, q, b: create_prompt(a.registry, b)),
        ("GET", f"/admin/prompts/{_NAME}", lambda a, m, q, b: show_prompt(a.registry, m["name"], q)),
        ("GET", f"/admin/prompts/{_NAME}/diff", lambda a, m, q, b: diff_versions(a.registry, m["name"], q)),
        ("POST", f"/admin/prompts/{_NAME}/render", lambda a, m, q, b: render_preview(a.registry, m["name"], b)),
        ("POST", f"/admin/prompts/{_NAME}/promote", lambda a, m, q, b: promote(a.registry, m["name"], b)),
        ("POST", f"/admin/prompts/{_NAME}/rollback", lambda a, m, q, b: rollback(a.registry, m["name"], b)),
        ("PUT", f"/admin/prompts/{_NAME}/labels/(?P<label>[^/]+)",
         lambda a, m, q, b: set_label(a.registry, m["name"], m["label"], b)),
        ("DELETE", f"/admin/prompts/{_NAME}/labels/(?P<label>[^/]+)",
         lambda a, m, q, b: delete_label(a, m["name"], m["label"], q)),
        ("DELETE", f"/admin/prompts/{_NAME}/versions/(?P<version>[^/]+)",
         lambda a, m, q, b: delete_version(a, m["name"], m["version"], q)),
        ("GET", "/admin/experiments", lambda a, m, q, b: list_experiments(a.experiments, q)),
        ("POST", "/admin/experiments", lambda a, m, q, b: start_experiment(a.experiments, b)),
        ("GET", f"/admin/experiments/{_NAME}", lambda a, m, q, b: experiment_status(a.experiments, m["name"], q)),
        ("POST", f"/admin/experiments/{_NAME}/stop",
         lambda a, m, q, b: stop_experiment(a.experiments, m["name"], b)),
    )
]


@dataclass(slots=True)
class PromptAdmin:
    registry: PromptRegistry
    experiments: Experiments


async def dispatch(admin: PromptAdmin | None, method: str, path: str, query: Mapping[str, Any],
                   body: Mapping[str, Any] | None) -> dict[str, Any]:
    """Run the admin call ``method path``; 404 for an unknown path, 405 for a known path's wrong method."""
    if admin is None:
        raise NotFoundError("The prompt registry is not enabled in this deployment (prompts.enabled).")
    path = path.rstrip("/") or "/"
    known_path = False
    for route_method, pattern, handler in _ROUTES:
        match = pattern.match(path)
        if match is None:
            continue
        known_path = True
        if route_method == method.upper():
            return await handler(admin, match.groupdict(), dict(query), dict(body or {}))
    if known_path:
        raise MethodNotAllowedError(f"{method.upper()} is not allowed on {path}.")
    raise NotFoundError(f"Unknown admin path {path}.")
