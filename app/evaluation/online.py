"""Online evaluation: a hashed sample of served answers is scored by the judge after the answer went out.

:meth:`OnlineEvaluator.submit` takes a finished request's log record: when sampled it owns the record
(scores it in the background, puts the verdict in ``record.evaluation["judge"]``, then writes it to the
request log) and returns True; otherwise it returns False and the caller logs the record as usual.
Scores also go to ``llmgw_eval_score`` per prompt version / route / variant, and to the experiment's
per-variant stats. The judge only ever sees PII-redacted text.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from app.evaluation.judge import Judge, JudgeError, request_text
from app.evaluation.settings import OnlineEvalConfig
from app.observability import metrics
from app.observability.redact import redact
from app.observability.request_log import RequestLogger, RequestLogRecord
from app.prompts.experiments import bucket

logger = logging.getLogger(__name__)


class OnlineEvaluator:
    def __init__(self, judge: Judge, cfg: OnlineEvalConfig, request_log: RequestLogger, experiments: Any = None,
                 timeout_s: float = 60.0) -> None:
        self.judge = judge
        self.cfg = cfg
        self.request_log = request_log
        self.experiments = experiments  # app.prompts.experiment_store.Experiments | None
        self.timeout_s = timeout_s
        self.tasks: set[asyncio.Task] = set()

    def sampled(self, request_id: str) -> bool:
        return bucket("llmgw-online-eval", request_id) < self.cfg.sample_rate

    def submit(self, record: RequestLogRecord) -> bool:
        """True if this evaluator now owns ``record`` (it will log it); never raises, never blocks."""
        try:
            if (not self.cfg.enabled or record.status != 200 or not record.response
                    or not self.sampled(record.request_id)):
                return False
            if len(self.tasks) >= self.cfg.max_concurrency:
                metrics.EVAL_RUNS.labels("online", "skipped_busy").inc()
                return False
            task = asyncio.get_running_loop().create_task(self._run(record))
        except Exception:
            return False
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return True

    async def wait(self) -> None:
        while self.tasks:
            await asyncio.gather(*list(self.tasks), return_exceptions=True)

    async def _run(self, record: RequestLogRecord) -> None:
        prompt = record.evaluation.get("prompt") or {}
        try:
            request = redact(request_text(record.messages, record.prompt)).text
            verdict = await asyncio.wait_for(
                self.judge.score(request=request, answer=redact(record.response).text), self.timeout_s)
            record.evaluation["judge"] = verdict.to_dict()
            metrics.EVAL_RUNS.labels("online", "scored").inc()
            metrics.EVAL_SCORE.labels(prompt.get("name", "-"), str(prompt.get("version", "-")), record.route,
                                      prompt.get("variant") or "-", "online").observe(verdict.score)
            await self._to_experiment(prompt, verdict.score)
        except (JudgeError, TimeoutError, ValueError) as exc:
            record.evaluation["judge"] = {"error": type(exc).__name__, "detail": str(exc)[:200]}
            metrics.EVAL_RUNS.labels("online", "failed").inc()
        except Exception:
            logger.warning("online evaluation failed", exc_info=True)
            metrics.EVAL_RUNS.labels("online", "failed").inc()
        finally:
            self.request_log.log(record)

    async def _to_experiment(self, prompt: dict[str, Any], score: float) -> None:
        if self.experiments is None or not prompt.get("experiment") or not prompt.get("variant"):
            return
        try:
            exp = await self.experiments.get(prompt.get("namespace"), prompt["experiment"])
            await self.experiments.record_score(exp, prompt["variant"], score)
        except Exception:
            logger.warning("recording an online score for experiment %s failed", prompt.get("experiment"))
