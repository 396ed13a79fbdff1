"""Build the Serve application graph from a GatewayConfig (``serve_config.yaml`` points here)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ray import serve
from ray.serve import Application
from ray.serve.handle import DeploymentHandle

from app.config import GatewayConfig, PoolConfig, load_config
from app.deploy.bind_args import POOL_APPS_KEY, ingress_args
from app.observability.settings import TracingConfig


def pool_deployment_name(pool: str) -> str:
    return f"pool-{pool}"


def _pool_app(pool: PoolConfig, tracing: dict | None = None) -> Application:
    from deployments.pool import ModelPool

    surge = {} if pool.max_surge_percent is None else {"max_surge_percent": pool.max_surge_percent}
    return ModelPool.options(
        **surge,
        name=pool_deployment_name(pool.name),
        autoscaling_config=pool.autoscaling_config,
        ray_actor_options=pool.ray_actor_options,
        max_ongoing_requests=pool.max_ongoing_requests,
        health_check_period_s=10,
        health_check_timeout_s=30,
    ).bind(pool.model_dump(), tracing)


def build_graph(cfg: GatewayConfig, pool_apps: dict[str, str] | None = None) -> Application:
    """The gateway application; ``pool_apps`` ({pool: Serve app name}): the pools run as their own
    applications (``build_pool_app``, app/deploy/pool_apps.py) and are reached by handle."""
    from deployments.cache import CacheDeployment
    from deployments.canary import CanaryRunner
    from deployments.fallback import FallbackDeployment
    from deployments.ingress import Ingress
    from deployments.router import Router

    tracing = cfg.observability.tracing.model_dump()
    pools: dict[str, Any] = (
        {p.name: DeploymentHandle(pool_deployment_name(p.name), pool_apps[p.name]) for p in cfg.pools}
        if pool_apps else {pool.name: _pool_app(pool, tracing) for pool in cfg.pools})
    router = Router.options(
        num_replicas=cfg.router.num_replicas,
        ray_actor_options=cfg.router.ray_actor_options,
        max_ongoing_requests=256,
    ).bind(cfg.router.model_dump(), tracing)
    cache = None
    if cfg.cache.enabled:
        # One replica: it owns the in-memory index (Redis holds the durable copy).
        cache = CacheDeployment.options(
            num_replicas=1, ray_actor_options=cfg.cache.ray_actor_options, max_ongoing_requests=1000
        ).bind(cfg.cache.model_dump(), tracing)
    fallback = None
    if cfg.fallback.providers and "providers" in cfg.fallback.chain:
        fallback = FallbackDeployment.options(
            num_replicas=1, ray_actor_options=cfg.fallback.ray_actor_options, max_ongoing_requests=1000
        ).bind(cfg.fallback.model_dump(), tracing)
    canary_cfg = cfg.observability.canary
    judge = cfg.evaluation.judge.model_dump() if cfg.evaluation.judge is not None else None
    canary = (CanaryRunner.bind(canary_cfg.model_dump(), judge=judge)
              if canary_cfg.enabled and canary_cfg.canaries else None)
    from deployments.batch import _batch_app

    batch = _batch_app(cfg, pools, router, cache, fallback)  # None: the lane is off or has no Redis
    shadow = _shadow_worker(cfg, pools)  # None: shadows run on the ingress (prompts.shadow.runner)
    return Ingress.options(
        num_replicas=cfg.ingress.num_replicas,
        ray_actor_options=cfg.ingress.ray_actor_options,
        max_ongoing_requests=cfg.ingress.max_ongoing_requests,
    ).bind(ingress_args(cfg), pools, router, cache, fallback, canary, batch, shadow=shadow)  # no pool engine tuning


def _shadow_worker(cfg: GatewayConfig, pools: dict[str, Any]) -> Application | None:
    """The ShadowWorker deployment (deployments/shadow.py) when shadows run off the ingress."""
    from app.prompts.shadow_worker import uses_worker

    if not uses_worker(cfg):
        return None
    from deployments.shadow import ShadowWorker

    return ShadowWorker.options(num_replicas=cfg.prompts.shadow.worker_replicas).bind(ingress_args(cfg), pools)


def build_app(args: dict[str, Any] | None = None) -> Application:
    """Serve entry point: ``import_path: app.graph:build_app``; ``args`` is a GatewayConfig or ``{config: path}``
    (with ``pool_applications``: the pools are other applications, see ``build_pool_app``)."""
    args = dict(args or {})
    pool_apps = args.pop(POOL_APPS_KEY, None)
    return build_graph(load_config(args), pool_apps=pool_apps)


def build_pool_app(args: dict[str, Any]) -> Application:
    """Serve entry point of one pool as its own application: ``args`` = ``{pool: PoolConfig, tracing: ...}``.

    Its code version hashes only this pool's config, so ``serve deploy`` with a changed engine argument of
    this pool restarts this pool alone (docs/deploy.md section 9).
    """
    pool = PoolConfig.model_validate(args["pool"])
    model = Path(pool.engine.model)  # relative model paths: against the working directory, as load_config
    if not model.is_absolute() and model.exists():
        pool.engine.model = str(model.resolve())
        pool.engine.served_model_name = pool.engine.served_model_name or model.name
    return _pool_app(pool, TracingConfig.model_validate(args.get("tracing") or {}).model_dump())


__all__ = ["build_app", "build_graph", "build_pool_app", "pool_deployment_name", "serve"]
