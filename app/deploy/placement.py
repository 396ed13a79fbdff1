"""Placement: what each node group offers and what each deployment asks for, from one profile.

A pool placed on a GPU group asks for ``num_gpus = tensor_parallel_size``, the group's
``accelerator_type`` and one unit of the group's custom resource ``pool_<name>``; the group declares
that resource (one unit per replica it can hold), the accelerator type and node labels. The CPU
services ask for one unit of ``cpu_services``, which only the CPU group declares, so they never take
a GPU node.
"""

from __future__ import annotations

import copy
import math
from typing import Any

from app.config import REDIS_URL_ENV, GatewayConfig
from app.deploy.profiles import NodeGroup, Profile

SERVICES_RESOURCE = "cpu_services"
SERVICES_PER_NODE = 100  # a cap on light replicas per CPU node; their CPUs are the real limit
SERVICE_SECTIONS = ("ingress", "router", "cache", "fallback", "batch")
POOL_LABEL = "llmgw.io/pool"
ACCELERATOR_LABEL = "ray.io/accelerator-type"


def pool_resource(pool: str) -> str:
    return f"pool_{pool}"


def placed_gateway(profile: Profile) -> dict[str, Any]:
    """The profile's gateway args with the placement's resources added to each deployment's options."""
    args = copy.deepcopy(profile.gateway)
    if profile.placement is None:
        return args
    cfg = profile.gateway_config()
    for pool in args["pools"]:
        group_name = profile.placement.pools.get(pool["name"])
        if group_name is None:
            continue
        group = profile.group(group_name)
        tp = cfg.pool(pool["name"]).engine.tensor_parallel_size
        opts = pool.setdefault("ray_actor_options", {"num_cpus": 1})
        opts.update(num_gpus=tp, accelerator_type=group.gpu_type.ray_type,
                    resources={pool_resource(pool["name"]): 1})
    if profile.placement.services:
        for section in (s for s in SERVICE_SECTIONS if hasattr(cfg, s)):
            defaults = getattr(cfg, section).ray_actor_options
            opts = args.setdefault(section, {}).setdefault("ray_actor_options", dict(defaults))
            opts["resources"] = {SERVICES_RESOURCE: 1}
    return args


def _pool_on(profile: Profile, group: NodeGroup) -> str | None:
    pools = profile.placement.pools if profile.placement else {}
    return next((pool for pool, g in pools.items() if g == group.name), None)


def replicas_per_node(profile: Profile, group: NodeGroup) -> int:
    pool = _pool_on(profile, group)
    if pool is None:
        return 0
    return group.gpus // profile.gateway_config().pool(pool).engine.tensor_parallel_size


def group_resources(profile: Profile, group: NodeGroup) -> dict[str, int]:
    """Custom Ray resources the group's nodes declare (beyond CPU / GPU / memory)."""
    resources: dict[str, int] = {}
    pool = _pool_on(profile, group)
    if pool is not None:
        resources[pool_resource(pool)] = replicas_per_node(profile, group)
        # Declared, not only auto-detected: the autoscaler must see it before the node exists, and
        # Ray never auto-detects the "-80G" sizes.
        resources[f"accelerator_type:{group.gpu_type.ray_type}"] = 1
    if profile.placement and profile.placement.services == group.name:
        resources[SERVICES_RESOURCE] = SERVICES_PER_NODE
    return resources


def group_labels(profile: Profile, group: NodeGroup) -> dict[str, str]:
    labels: dict[str, str] = {}
    if group.gpu_type is not None:
        labels[ACCELERATOR_LABEL] = group.gpu_type.ray_type
    pool = _pool_on(profile, group)
    if pool is not None:
        labels[POOL_LABEL] = pool
    return labels


def surge_replicas(percent: int | None, replicas: int) -> int:
    """Replicas Serve may start beyond ``replicas`` on a restart with ``max_surge_percent`` (its integer ceiling)."""
    return ((percent or 0) * replicas + 99) // 100


def group_bounds(profile: Profile, group: NodeGroup) -> tuple[int, int]:
    """(min, max) nodes: a pool's group follows the pool's autoscaling bounds, its max raised by the pool's
    ``max_surge_percent`` (the replacements Serve starts before stopping old replicas need nodes even at
    ``max_replicas``); other groups as written."""
    pool = _pool_on(profile, group)
    if pool is None:
        return group.min_workers or 0, group.max_workers if group.max_workers is not None else 1
    cfg = profile.gateway_config().pool(pool)
    scaling = cfg.autoscaling_config
    per_node = replicas_per_node(profile, group)
    low = math.ceil(scaling.get("min_replicas", 1) / per_node)
    most = scaling.get("max_replicas", scaling.get("min_replicas", 1))
    high = math.ceil((most + surge_replicas(cfg.max_surge_percent, most)) / per_node)
    return low, high


def services_group(profile: Profile, group: NodeGroup) -> bool:
    return bool(profile.placement and profile.placement.services == group.name)


def secret_envs(cfg: GatewayConfig) -> list[str]:
    """Every env var the gateway may read a secret from, in a stable order: the Redis URL, then each
    ``*_env`` / ``*_envs`` field of the config (API keys, provider keys, webhook and encryption keys)."""
    names = [REDIS_URL_ENV]

    def walk(node: object) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key.endswith("_env") and isinstance(value, str):
                    names.append(value)
                elif key.endswith("_envs") and isinstance(value, dict):
                    names.extend(v for v in value.values() if isinstance(v, str))
                else:
                    walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(cfg.model_dump())
    return list(dict.fromkeys(names))


def required_secret_envs(cfg: GatewayConfig) -> set[str]:
    """Secrets without which the gateway must not start (a pod waits for them); the others are optional."""
    required = {REDIS_URL_ENV}
    if cfg.auth.enabled:
        required.add(cfg.auth.admin_key_env)  # tenant keys live in the policy store, not in the environment
    return required
