"""Build the Serve application graph from a GatewayConfig (``serve_config.yaml`` points here)."""

from __future__ import annotations

from typing import Any

from ray import serve
from ray.serve import Application

from app.config import GatewayConfig, PoolConfig, load_config
from app.deploy.bind_args import ingress_args


def pool_deployment_name(pool: str) -> str:
    return f"pool-{pool}"


def _pool_app(pool: PoolConfig, tracing: dict | None = None) -> Application:
    from deployments.pool import ModelPool

    return ModelPool.options(
        name=pool_deployment_name(pool.name),
        autoscaling_config=pool.autoscaling_config,
        ray_actor_options=pool.ray_actor_options,
        max_ongoing_requests=pool.max_ongoing_requests,
        health_check_period_s=10,
        health_check_timeout_s=30,
    ).bind(pool.model_dump(), tracing)


def build_graph(cfg: GatewayConfig) -> Application:
    from deployments.cache import CacheDeployment
    from deployments.canary import CanaryRunner
    from deployments.fallback import FallbackDeployment
    from deployments.ingress import Ingress
    from deployments.router import Router

    tracing = cfg.observability.tracing.model_dump()
    pools = {pool.name: _pool_app(pool, tracing) for pool in cfg.pools}
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
    return Ingress.options(
        num_replicas=cfg.ingress.num_replicas,
        ray_actor_options=cfg.ingress.ray_actor_options,
        max_ongoing_requests=cfg.ingress.max_ongoing_requests,
    ).bind(ingress_args(cfg), pools, router, cache, fallback, canary, batch)  # no pool engine tuning


def build_app(args: dict[str, Any] | None = None) -> Application:
    """Serve entry point: ``import_path: app.graph:build_app``; ``args`` is a GatewayConfig or ``{config: path}``."""
    return build_graph(load_config(args))


__all__ = ["build_app", "build_graph", "pool_deployment_name", "serve"]
