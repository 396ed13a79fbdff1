"""The ingress pipeline, composed from config and backends: the one list to read the request path from."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.caching.guard import GuardedCache
from app.config import GatewayConfig
from app.guardrails.service import Guardrails
from app.observability.request_log import RequestLogger
from app.pipeline.admit import Admit
from app.pipeline.authenticate import Authenticate
from app.pipeline.backends import CacheClient, PoolClient, ProviderClient, RouterClient
from app.pipeline.cache import Cache
from app.pipeline.generate import Generate
from app.pipeline.guard_input import GuardInput
from app.pipeline.guard_output import GuardOutput
from app.pipeline.log import Log
from app.pipeline.parse import Parse
from app.pipeline.pipeline import Pipeline
from app.pipeline.render_prompt import PromptWiring
from app.pipeline.reserve import Reserve
from app.pipeline.route import ModelScope, Route
from app.pipeline.settle import Settle
from app.pipeline.tokens import CountTokens
from app.policy.service import PolicyService
from app.resilience.breaker import BreakerRegistry
from app.structured.stage import StructuredOutput


@dataclass
class Services:
    """What the stages share beyond the backends (built once per ingress replica)."""

    policy: PolicyService
    guardrails: Guardrails
    prompts: PromptWiring | None = None


def default_services(config: GatewayConfig, request_log: RequestLogger | None = None,
                     embed: Any = None) -> Services:
    """Policy on ``redis.url`` (in memory without it), guardrails, prompts (registry on the same Redis)."""
    from app.pipeline.render_prompt import build_prompt_wiring
    from app.policy.factory import build_policy

    return Services(build_policy(config), Guardrails(config.guardrails, embed=embed),
                    build_prompt_wiring(config, request_log=request_log))


def build_pipeline(config: GatewayConfig, *, router: RouterClient | None, cache: CacheClient | None,
                   pools: PoolClient, providers: ProviderClient | None, breakers: BreakerRegistry,
                   request_log: RequestLogger, services: Services | None = None) -> Pipeline:
    """parse → authenticate → scope → admit → render_prompt → route → tokens → guard_input → reserve → cache →
    generate; output: structured_output, guard_output; finishers: settle → prompt_outcome → log."""
    svc = services or default_services(config, request_log)
    if cache is not None:  # lookup, store and stale lookup bounded: a slow or dead cache is a miss, never a stall
        cache = GuardedCache.from_config(cache, config.cache)
    # the stage's own timeout is only a backstop past the guard's (which counts the failure on its breaker)
    overlap = config.ingress.overlap_checks
    cache_stage = (Cache(cache, lookup_timeout_s=config.cache.lookup_timeout_s + 1.0, overlap=overlap,
                         config=config.cache) if cache is not None else None)
    generate = Generate(config, pools, providers, cache, breakers,
                        pending=cache_stage.pending if cache_stage is not None else None)
    prompts = svc.prompts
    if prompts is not None and prompts.shadow is None:  # shadow candidates run on the same pools, never returned
        prompts.attach_shadow(lambda req: pools.generate(req.model, req))
    stages = [
        Parse(config),
        Authenticate(svc.policy),
        ModelScope(config),
        Admit(svc.policy),
        *([prompts.render] if prompts is not None else []),
        Route(config, router, cache_enabled=cache is not None, overlap=overlap),
        CountTokens(config),
        GuardInput(svc.guardrails, overlap=overlap),
        Reserve(svc.policy),
        *([cache_stage] if cache_stage is not None else []),
        generate,
    ]
    online = prompts.online if prompts is not None else None
    finishers = [Settle(svc.policy), *([prompts.outcome] if prompts is not None else []),
                 Log(request_log, online=online)]
    return Pipeline(stages=stages, output_stages=[StructuredOutput(generate), GuardOutput(svc.guardrails)],
                    finishers=finishers)
