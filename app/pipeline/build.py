"""The ingress pipeline, composed from config and backends: the one list to read the request path from."""

from __future__ import annotations

from app.config import GatewayConfig
from app.observability.request_log import RequestLogger
from app.pipeline.authenticate import Authenticate
from app.pipeline.backends import CacheClient, PoolClient, ProviderClient, RouterClient
from app.pipeline.cache import Cache
from app.pipeline.generate import Generate
from app.pipeline.log import Log
from app.pipeline.parse import Parse
from app.pipeline.pipeline import Pipeline
from app.pipeline.route import Route
from app.pipeline.settle_cost import Cost
from app.pipeline.tokens import CountTokens
from app.resilience.breaker import BreakerRegistry


def build_pipeline(config: GatewayConfig, *, router: RouterClient | None, cache: CacheClient | None,
                   pools: PoolClient, providers: ProviderClient | None, breakers: BreakerRegistry,
                   request_log: RequestLogger) -> Pipeline:
    """parse → authenticate → route → tokens → cache → generate ⟶ settle → log (README: request path)."""
    cache_stage = Cache(cache) if cache is not None else None
    stages = [
        Parse(config),
        Authenticate(config.auth),
        Route(config, router, cache_enabled=cache is not None),
        CountTokens(config),
        *([cache_stage] if cache_stage is not None else []),
        Generate(config, pools, providers, cache, breakers,
                 pending=cache_stage.pending if cache_stage is not None else None),
    ]
    return Pipeline(stages=stages, output_stages=[], finishers=[Cost(), Log(request_log)])
