"""Batch workers: a Serve deployment of their own that drains the batch lane's Redis streams.

Each replica runs one :class:`app.batch.worker.BatchWorker` (consumer name unique per replica start)
and executes lines through the same pipeline as the ingress, on the same pool/router/cache/fallback
handles. The capacity gate polls each pool's ``stats()`` so batch work only uses spare capacity.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import uuid
from typing import Any

from ray import serve
from ray.serve import Application
from ray.serve.handle import DeploymentHandle

from app.batch.execute import pipeline_executor
from app.batch.gate import CapacityGate, GatedPools, PoolGate, pools_for
from app.batch.service import redis_url_of
from app.batch.store import BatchStore, connect
from app.batch.worker import BatchWorker
from app.config import GatewayConfig
from app.observability import metrics
from app.observability.request_log import RequestLogger
from app.observability.tracing import setup_tracing
from app.pipeline.build import build_pipeline
from app.resilience.breaker import BreakerRegistry
from deployments.ingress_backends import CacheHandle, PoolHandles, ProviderHandle, RouterHandle

logger = logging.getLogger("ray.serve")


def make_webhook_sender(cfg: GatewayConfig, redis: Any = None) -> Any:
    """The product's one webhook sender (app/webhooks/sender.py; dedup across replicas in Redis)."""
    try:
        from app.webhooks.sender import WebhookSender
    except ImportError:
        logger.warning("app.webhooks.sender is not available: batch/async webhooks are not sent")
        return None
    settings = getattr(getattr(cfg, "policy", None), "webhooks", None)
    return WebhookSender(settings, redis=redis, redis_prefix=f"{cfg.batch.key_prefix}:webhooks")


def make_ledger(cfg: GatewayConfig) -> Any:
    """The policy ledger that settles batch reservations (the ingress must reserve with the same kind)."""
    try:
        from app.policy.batch_ledger import PolicyBatchLedger
        from app.policy.factory import build_policy
    except ImportError:
        return None
    try:
        return PolicyBatchLedger(build_policy(cfg))
    except Exception as exc:  # the lane still runs; settlements are then not booked
        logger.warning("batch ledger unavailable (%s); batch spend is not settled", type(exc).__name__)
        return None


@serve.deployment
class BatchWorkers:
    async def __init__(self, config: dict[str, Any], pools: dict[str, DeploymentHandle], router: DeploymentHandle,
                       cache: DeploymentHandle | None = None, fallback: DeploymentHandle | None = None) -> None:
        cfg = GatewayConfig.model_validate(config)
        self.cfg = cfg
        self.pools = pools
        setup_tracing(cfg.observability.tracing)
        b = cfg.batch
        self.gates = {p.name: PoolGate(p.name, p.max_ongoing_requests, p.engine.max_num_seqs, b.pool_share,
                                       b.busy_share, b.backoff_queue_depth, b.idle_window_s) for p in cfg.pools}
        pipeline = build_pipeline(  # GatedPools: counts batch requests on each pool, narrows `auto` leases
            cfg, router=RouterHandle(router), cache=CacheHandle(cache) if cache is not None else None,
            pools=GatedPools(PoolHandles(pools), self.gates),
            providers=ProviderHandle(fallback) if fallback is not None else None,
            breakers=BreakerRegistry(cfg.fallback.breaker),
            request_log=RequestLogger(cfg.observability.request_log),
        )
        pool_for = pools_for(cfg.model_names(), [p.name for p in cfg.pools])  # auto: every pool until routed
        execute = pipeline_executor(pipeline, cfg.auth.tenant_header, embed=router.embed_batch.remote,
                                    embed_concurrency=b.embed_concurrency)

        self.consumer = f"batch-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        store = BatchStore(connect(redis_url_of(cfg)), b)
        self.worker = BatchWorker(store, execute, consumer=self.consumer,
                                  gate=CapacityGate(self.gates), pool_for=pool_for, ledger=make_ledger(cfg),
                                  sender=make_webhook_sender(cfg, store.redis))
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self.worker.run()), loop.create_task(self._poll_pools())]

    async def _poll_pools(self) -> None:
        """Feed the capacity gate: each pool's engine load (real-time + batch) every ``stats_interval_s``."""
        while True:
            for name, handle in self.pools.items():
                try:
                    stats = await asyncio.wait_for(handle.stats.remote(), 2.0)
                    await self.gates[name].observe(int(stats.get("running", 0)), preempt=self.cfg.batch.preempt)
                except Exception:
                    await self.gates[name].observe(10**6)  # pool unreachable: no batch work for it
            await asyncio.sleep(self.cfg.batch.stats_interval_s)

    async def status(self) -> dict[str, Any]:
        return {"consumer": self.consumer, "held": len(self.worker.held),
                "gates": {n: {"limit": g.limit, "in_flight": g.in_flight, "cap": g.cap, "preempted": g.preempted}
                          for n, g in self.gates.items()}}

    async def check_health(self) -> None:
        for task in self._tasks:
            if task.done():
                raise RuntimeError(f"batch worker loop ended: {task.exception()!r}")

    def __del__(self) -> None:
        for task in getattr(self, "_tasks", []):
            with contextlib.suppress(Exception):
                task.cancel()
        metrics.mark_process_dead()  # graceful replica shutdown: its lane gauges leave /metrics


def _batch_app(cfg: GatewayConfig, pools: dict[str, Application], router: Application,
               cache: Application | None, fallback: Application | None) -> Application | None:
    """The batch deployment bound to the same handles as the ingress (None: lane off or no redis.url)."""
    if not cfg.batch.enabled or not redis_url_of(cfg):
        return None
    return BatchWorkers.options(
        num_replicas=cfg.batch.num_replicas, ray_actor_options=cfg.batch.ray_actor_options,
        max_ongoing_requests=16, health_check_period_s=10,
    ).bind(cfg.model_dump(), pools, router, cache, fallback)
