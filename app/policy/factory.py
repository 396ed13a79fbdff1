"""Build the policy layer from a GatewayConfig: price table, Redis client, stores, alert webhooks."""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import logging
import os
from collections.abc import Callable, Mapping

from app.config import GatewayConfig
from app.observability import cost
from app.policy.ledger import Alert
from app.policy.prices import (
    POOL_THROUGHPUT,
    Price,
    PriceTable,
    amortised_price,
    build_price_table,
    gpu_pool_price,
)
from app.policy.service import Identity, PolicyService

logger = logging.getLogger("llmgw.policy")


def price_table(config: GatewayConfig) -> PriceTable:
    """Every served name and alias of every pool, providers' models, configured prices, free models."""
    p = config.policy.prices
    pools = [(pool.name, [pool.engine.name, *pool.aliases]) for pool in config.pools]
    pool_prices = {name: amortised_price(v.gpu_usd_per_hour, v.input_tok_per_s, v.output_tok_per_s)
                   for name, v in p.pools.items()}
    for pool in config.pools:  # unconfigured GPU pools: their GPU type × count (ray_actor_options)
        opts, tput = pool.ray_actor_options, POOL_THROUGHPUT.get(pool.name)
        if pool.name not in pool_prices and tput and (
                derived := gpu_pool_price(opts.get("accelerator_type"), opts.get("num_gpus", 0), *tput)):
            pool_prices[pool.name] = derived
    models = {**config.observability.prices, **p.models}  # observability.prices: the older spelling
    return build_price_table(pools, pool_prices=pool_prices, models=models, free_models=config.policy.free_models,
                             include_list_prices=p.include_list_prices, version=p.version)


def _check_durability_sync(url: str, refuse: bool) -> None:
    import redis as redis_sync

    from app.policy.store_guard import check_durability

    client = redis_sync.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)

    class _Async:  # check_durability is written for the asyncio client: adapt the two calls
        async def config_get(self, name: str):
            return client.config_get(name)

    try:
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # no loop in this thread (the CLI, a plain replica constructor)
            asyncio.run(check_durability(_Async(), refuse))
        else:  # a replica constructor on Serve's running loop (RAY_SERVE_THROUGHPUT_OPTIMIZED): a thread of its own
            with concurrent.futures.ThreadPoolExecutor(1) as pool:
                pool.submit(asyncio.run, check_durability(_Async(), refuse)).result()
    except redis_sync.exceptions.ConnectionError as exc:
        logger.warning("policy store: Redis not reachable at start (%s); the fail modes apply until it is",
                       type(exc).__name__)
    finally:
        client.close()


def policy_redis(url: str, timeout_s: float):
    """The policy store's client: every call bounded by ``timeout_s`` and retried at most once, at once
    (a pooled connection that died with a Redis restart), so an outage costs one timeout, not backoffs."""
    from redis.asyncio import Redis
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    return Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s,
                          retry=Retry(NoBackoff(), 1))


def build_policy(config: GatewayConfig, *, redis=None, clock: Callable[[], float] | None = None,
                 environ: Mapping[str, str] = os.environ, check_durability: bool = True) -> PolicyService:
    """The PolicyService for ``config`` (Redis from ``redis.url`` unless a client is given)."""
    url = config.redis.url
    if redis is None and url:
        if check_durability:
            _check_durability_sync(url, config.policy.durability == "refuse")
        redis = policy_redis(url, config.policy.redis_timeout_s)
    kwargs = {"clock": clock} if clock is not None else {}
    service = PolicyService(config.policy, auth_enabled=config.auth.enabled,
                            tenant_header=config.auth.tenant_header, redis=redis, environ=environ, **kwargs)
    table = price_table(config)
    service.enforcer.prices = table
    cost.use_table(table)  # cost_usd() callers (metrics, request log) price from the same table
    alerts = config.policy.alerts
    if alerts.webhook_url:
        service.enforcer.alert_sink = webhook_alert_sink(config, environ)
    logger.info(service.describe())
    return service


def webhook_alert_sink(config: GatewayConfig, environ: Mapping[str, str]) -> Callable[[Alert, Identity], None]:
    from app.webhooks.sender import WebhookSender

    alerts = config.policy.alerts
    sender = WebhookSender(config.policy.webhooks)
    tasks: set[asyncio.Task] = set()

    def sink(alert: Alert, who: Identity) -> None:
        s = alert.subject
        data = {"tenant": who.tenant, "owner": s.owner, "subject": s.key, "period": s.period,
                "threshold": alert.threshold, "spent_usd": alert.spent_nusd / 1e9,
                "budget_usd": (s.limit_nusd or 0) / 1e9}
        event_id = "evt_" + hashlib.sha256(f"{s.key}|{alert.threshold:g}".encode()).hexdigest()[:24]
        task = asyncio.get_running_loop().create_task(sender.send(
            alerts.webhook_url, "budget.threshold_crossed", data, event_id=event_id,
            secret=environ.get(alerts.webhook_secret_env)))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    return sink


__all__ = ["Price", "build_policy", "policy_redis", "price_table", "webhook_alert_sink"]
