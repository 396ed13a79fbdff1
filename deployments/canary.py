"""Canary runner: one replica that sends the configured reference requests to the gateway periodically.

A deployment of its own so canaries run once per cluster, not once per ingress replica; results go to
the `llmgw_canary_*` metrics and deviation log events (app/observability/canary.py).
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from ray import serve

from app.observability.canary import run_periodically
from app.observability.settings import CanarySettings


@serve.deployment(num_replicas=1, ray_actor_options={"num_cpus": 0})
class CanaryRunner:
    def __init__(self, settings: dict[str, Any], judge: dict[str, Any] | None = None) -> None:
        self.settings = CanarySettings.model_validate(settings)
        self.judge_config = judge  # evaluation.judge: enables judge_score checks
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="canaries", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        async def main() -> None:
            stop = asyncio.Event()
            judge = None
            if self.judge_config is not None:
                from app.evaluation.judge import Judge, canary_judge
                from app.evaluation.settings import JudgeConfig

                judge = canary_judge(Judge(JudgeConfig.model_validate(self.judge_config)))
            task = asyncio.create_task(run_periodically(self.settings.base_url, self.settings, stop, judge=judge))
            while not self._stop.is_set():
                await asyncio.sleep(0.5)
            stop.set()
            await task

        asyncio.run(main())

    async def check_health(self) -> None:
        if not self._thread.is_alive():
            raise RuntimeError("canary loop died")

    def __del__(self) -> None:
        self._stop.set()
