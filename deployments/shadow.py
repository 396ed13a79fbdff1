"""Shadow worker: runs the prompt experiments' shadow candidates in a process of its own, at a lower CPU priority,
so the served path (ingress, pools' served calls) comes first on the machine's cores.

The ingress hands over batches of tickets (``app.prompts.shadow_worker.ShadowForwarder``); here each becomes a
``ShadowRunner`` job on this replica's registry (the shared Redis): budget check, candidate render, the pool call
(batched per pool, ``generate_batch``), judge, stats, the request-log record beside the served one. Nothing
goes back to the client: ``run`` answers the hand-over once the tickets are queued.
"""

from __future__ import annotations

import logging
from typing import Any

from ray import serve
from ray.serve.handle import DeploymentHandle

from app.config import GatewayConfig
from app.observability.request_log import RequestLogger
from app.pipeline.render_prompt import build_prompt_wiring
from app.prompts.shadow import ShadowTicket
from app.prompts.shadow_worker import PoolBatcher, renice_process

logger = logging.getLogger(__name__)


@serve.deployment(ray_actor_options={"num_cpus": 0}, max_ongoing_requests=1000)
class ShadowWorker:
    def __init__(self, config: dict[str, Any], pools: dict[str, DeploymentHandle]) -> None:
        self.config = GatewayConfig.model_validate(config)
        shadow = self.config.prompts.shadow
        self.nice = renice_process(shadow.worker_niceness) if shadow.worker_niceness else None
        request_log = RequestLogger(self.config.observability.request_log)
        self.batcher = PoolBatcher(pools, priority=shadow.engine_priority)
        wiring = build_prompt_wiring(self.config, request_log=request_log, shadow_generate=self.batcher)
        self.registry = wiring.registry
        self.runner = wiring.shadow
        # the ingress waited out the start delay and the gap between its served requests before the hand-over
        self.runner.start_delay_s, self.runner.served, self.runner.yield_max_s = 0.0, None, 0.0

    async def run(self, tickets: list[ShadowTicket]) -> int:
        """Queue the tickets' runs (never waits for them); how many were taken (the rest: skipped_busy)."""
        return sum(self.runner.submit(ticket.job(self.registry)) for ticket in tickets)

    async def stats(self) -> dict[str, Any]:
        return {"counts": dict(self.runner.counts), "pending": len(self.runner.tasks), "nice": self.nice}

    async def check_health(self) -> None:
        return None
