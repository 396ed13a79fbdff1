"""What each Serve deployment is bound with: only the part of the GatewayConfig it reads.

A pool's engine-only tuning (vLLM args such as ``max_num_seqs``, its autoscaling, env, stream window) is
bound to that pool alone. The ingress gets every other section plus, per pool, the fields the request
path reads (name, aliases, engine kind, tool parser, served model name, model/tokenizer path,
``max_model_len``, the GPU type × count the price table derives a cost from). The router, cache and
fallback deployments already get only their own section (``app/graph.py``). See docs/decisions.md
(per-deployment config) and docs/deploy.md section 9 for what this does and does not change on ``serve deploy``.
"""

from __future__ import annotations

from typing import Any

from app.config import GatewayConfig

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


def ingress_args(cfg: GatewayConfig) -> dict[str, Any]:
    """The ingress's config: the whole GatewayConfig but each pool's engine-only tuning."""
    dump = cfg.model_dump()
    dump["pools"] = [ingress_pool_view(p) for p in dump["pools"]]
    return dump


__all__ = ["INGRESS_ENGINE_FIELDS", "INGRESS_POOL_FIELDS", "ingress_args", "ingress_pool_view"]
