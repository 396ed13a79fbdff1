"""What each Serve deployment is bound with: only the part of the GatewayConfig it reads.

A pool's engine-only tuning (vLLM args such as ``max_num_seqs``, its autoscaling, env, stream window) is
bound to that pool alone. The ingress gets every other section plus, per pool, the fields the request
path reads (name, aliases, engine kind, tool parser, served model name, model/tokenizer path,
``max_model_len``, the GPU type × count the price table derives a cost from). The router, cache and
fallback deployments already get only their own section (``app/graph.py``). See docs/decisions.md
(per-deployment config) and docs/deploy.md section 9 for what this does and does not change on ``serve deploy``.
"""

from __future__ import annotations

import copy
from typing import Any

from app.config import GatewayConfig

POOL_APPS_KEY = "pool_applications"  # gateway app arg {pool: Serve app name}: the pools are their own applications

# Per pool, what app/pipeline, app/api, app/policy and app/batch/service read on the ingress.
INGRESS_POOL_FIELDS = ("name", "engine_kind", "aliases", "tool_parser")
INGRESS_ENGINE_FIELDS = ("model", "served_model_name", "max_model_len")
INGRESS_ACTOR_OPTIONS = ("accelerator_type", "num_gpus")  # app/policy/factory.price_table


def ingress_pool_view(pool: dict[str, Any]) -> dict[str, Any]:
    """One pool's dump cut to the ingress's fields (the rest validates back to defaults)."""
    view = {k: pool[k] for k in INGRESS_POOL_FIELDS if k in pool}
    view["engine"] = {k: pool["engine"][k] for k in INGRESS_ENGINE_FIELDS if k in pool["engine"]}
    opts = pool.get("ray_actor_options") or {}
    view["ray_actor_options"] = {k: opts[k] for k in INGRESS_ACTOR_OPTIONS if k in opts}
    return view


def pool_app_name(gateway_app: str, pool: str) -> str:
    return f"{gateway_app}-pool-{pool}"


def gateway_pool_view(pool: dict[str, Any], batch: bool) -> dict[str, Any]:
    """A pool as the gateway application (ingress, router, cache, batch) sees it when the pool is its own app.

    The batch lane's gates size themselves by the pool's ``max_ongoing_requests`` and ``max_num_seqs``
    (deployments/batch.py), so with the lane on those two stay in the gateway's args: changing them restarts
    the gateway application as well.
    """
    view = ingress_pool_view(pool)
    if batch:
        if "max_ongoing_requests" in pool:
            view["max_ongoing_requests"] = pool["max_ongoing_requests"]
        if "max_num_seqs" in pool["engine"]:
            view["engine"]["max_num_seqs"] = pool["engine"]["max_num_seqs"]
    return view


def split_pool_apps(serve_cfg: dict[str, Any]) -> dict[str, Any]:
    """A Serve config whose gateway app (the first) is split: each pool becomes its own application
    (``app.graph:build_pool_app``, no HTTP route), the gateway keeps every other section and, per pool,
    ``gateway_pool_view``. Serve versions each application by its own args, so a pool's engine args,
    env or autoscaling then restart that pool alone (docs/deploy.md section 9)."""
    out = copy.deepcopy(serve_cfg)
    gateway = out["applications"][0]
    args = gateway["args"]
    if POOL_APPS_KEY in args:
        raise ValueError("this Serve config is already split into per-pool applications")
    cfg = GatewayConfig.model_validate(args)  # refuse an invalid config before splitting it
    tracing = cfg.observability.tracing.model_dump()
    pool_apps = []
    for pool in args["pools"]:
        pool_apps.append({"name": pool_app_name(gateway["name"], pool["name"]), "route_prefix": None,
                          "import_path": "app.graph:build_pool_app", "runtime_env": gateway.get("runtime_env", {}),
                          "args": {"pool": pool, "tracing": tracing}})
    gateway["args"] = {**args, "pools": [gateway_pool_view(p, cfg.batch.enabled) for p in args["pools"]],
                       POOL_APPS_KEY: {p["name"]: a["name"] for p, a in zip(args["pools"], pool_apps, strict=True)}}
    overrides = gateway.pop("deployments", None) or []  # per-deployment options go with their deployment
    for app, pool in zip(pool_apps, args["pools"], strict=True):
        if mine := [d for d in overrides if d.get("name") == f"pool-{pool['name']}"]:
            app["deployments"] = mine
    if rest := [d for d in overrides if not str(d.get("name", "")).startswith("pool-")]:
        gateway["deployments"] = rest
    out["applications"] = [gateway, *pool_apps, *out["applications"][1:]]
    return out


def gateway_args(serve_cfg: dict[str, Any]) -> dict[str, Any]:
    """The whole GatewayConfig of a Serve config file, in either layout.

    One application: its args. Per-pool applications (``split_pool_apps``): the gateway's args with each
    pool's view replaced by the full pool its application is bound with (and no ``pool_applications``),
    so ``load_config``, ``llmgw run`` and the tests read every pool's engine, placement and autoscaling.
    """
    apps = serve_cfg["applications"]
    args = dict(apps[0].get("args") or {})
    pool_apps = args.pop(POOL_APPS_KEY, None)
    if not pool_apps:
        return args
    by_name = {app["name"]: app for app in apps}
    missing = sorted(set(pool_apps.values()) - set(by_name))
    if missing:
        raise ValueError(f"pool_applications names applications the config lacks: {missing}")
    args["pools"] = [copy.deepcopy(by_name[pool_apps[p["name"]]]["args"]["pool"]) for p in args.get("pools", [])]
    return args


def ingress_args(cfg: GatewayConfig) -> dict[str, Any]:
    """The ingress's config: the whole GatewayConfig but each pool's engine-only tuning."""
    dump = cfg.model_dump()
    dump["pools"] = [ingress_pool_view(p) for p in dump["pools"]]
    return dump


__all__ = ["INGRESS_ENGINE_FIELDS", "INGRESS_POOL_FIELDS", "POOL_APPS_KEY", "gateway_args", "gateway_pool_view",
           "ingress_args", "ingress_pool_view", "pool_app_name", "split_pool_apps"]
