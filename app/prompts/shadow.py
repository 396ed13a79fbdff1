"""Shadow runs: a candidate (prompt version and/or model) answers a sampled share of traffic in the
background. Its answer is logged beside the served one and scored; it is never returned, never
cached, and never delays or fails the served answer: ``submit`` only starts a task (bounded
pending tasks, strong references kept) that waits ``start_delay_s`` before any work, so the served
answer's last bytes leave first; after the delay it waits for one of ``max_concurrency`` run slots (a
shadow still in its delay holds none; at most ``max_pending`` are held, beyond it a sample is skipped);
every error is swallowed and counted. Its cost is counted
against the experiment's own USD budget; once spent, samples are skipped.

Where it runs: in the ingress replica (this runner, fed by the pools' ``generate``), or, with a shared
registry, in the low-priority ``ShadowWorker`` deployment (``app.prompts.shadow_worker``): then the ingress
only hands a picklable :class:`ShadowTicket` over and the worker builds and runs the job.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from app.evaluation.judge import Judge, JudgeError, request_text
from app.generation import GenerationChunk, GenerationRequest
from app.observability import metrics
from app.observability.cost import cost_usd
from app.observability.redact import redact
from app.observability.request_log import RequestLogger, RequestLogRecord
from app.prompts.experiment_store import Experiments, Outcome
from app.prompts.experiments import Experiment
from app.prompts.template import render

logger = logging.getLogger(__name__)
# the candidate's answer; or (answer, engine latency ms) when the caller knows better than the wall time
# around the call (a batched pool call returns when its slowest member is done)
Generate = Callable[[GenerationRequest], Awaitable["str | GenerationChunk | tuple[str | GenerationChunk, float]"]]


class InFlight:
    """Served requests in flight on this replica (the render stage enters, the outcome finisher leaves), so
    shadows run in the gaps between them: the lower-priority path."""

    def __init__(self) -> None:
        self.count = 0
        self._idle = asyncio.Event()
        self._idle.set()

    def enter(self) -> None:
        self.count += 1
        self._idle.clear()

    def leave(self) -> None:
        self.count = max(0, self.count - 1)
        if self.count == 0:
            self._idle.set()

    async def wait_idle(self, timeout_s: float) -> bool:
        """True once no served request is in flight (at once if none is); False after ``timeout_s``."""
        if self.count == 0:
            return True
        try:
            await asyncio.wait_for(self._idle.wait(), timeout_s)
        except TimeoutError:
            return False
        return True


@dataclass(slots=True)
class ShadowJob:
    """One shadow run: the candidate's request and what was served for comparison."""

    experiment: Experiment
    request: GenerationRequest | None  # the candidate's messages and model (a pool name), its own request id
    served_request_id: str
    served_text: str
    served_variant: str | None
    candidate: str  # the prompt and candidate (version / label / model), for the log
    prompt: str
    version: str  # the served version (metric label)
    prepare: Callable[[], Awaitable[GenerationRequest]] | None = None  # builds ``request`` inside the task
    ticket: ShadowTicket | None = None  # the job as data, for a runner in another process


@dataclass(slots=True)
class ShadowTicket:
    """Everything a shadow run needs, as plain picklable data (no template objects, no closures): the ingress
    builds it after the served answer; the runner (here or in the ShadowWorker) turns it into a job."""

    experiment: Experiment
    served: GenerationRequest  # the served request (its messages start with the served template's)
    served_text: str
    served_variant: str | None
    prompt: str  # the prompt's name
    version: int  # the served version
    variables: dict[str, Any]
    template_messages: int  # how many of ``served.messages`` the served template rendered
    pool: str  # where the candidate runs

    def job(self, registry: Any, served_version: Any = None) -> ShadowJob:
        """The job; ``served_version`` (a PromptVersion) saves a lookup when the candidate keeps the served one."""
        spec = self.experiment.shadow
        candidate = f"{self.prompt}:{spec.describe()}"

        async def prepare() -> GenerationRequest:
            pv = served_version
            own = spec.version is not None or spec.label is not None  # else a model-only candidate: served version
            if own or pv is None:  # the cached hot-path lookup
                ns, state = await registry.find(self.experiment.namespace, self.prompt)
                pv = await registry.resolve_in(ns, self.prompt, state, *((spec.version, spec.label) if own
                                                                         else (self.version, None)))
            messages = render(pv.template, self.variables) + list((self.served.messages or [])[self.template_messages:])
            return dataclasses.replace(self.served, request_id=f"{self.served.request_id}-shadow", model=self.pool,
                                       messages=messages)

        return ShadowJob(self.experiment, None, self.served.request_id, self.served_text, self.served_variant,
                         candidate, self.prompt, str(self.version), prepare=prepare, ticket=self)


class ShadowRunner:
    def __init__(self, generate: Generate, experiments: Experiments, *, request_log: RequestLogger | None = None,
                 judge: Judge | None = None, max_concurrency: int = 4, timeout_s: float = 60.0,
                 start_delay_s: float = 0.0, max_pending: int = 256, served: InFlight | None = None,
                 yield_max_s: float = 0.0) -> None:
        self.generate = generate
        self.experiments = experiments
        self.request_log = request_log
        self.judge = judge
        self.max_concurrency = max_concurrency  # runs in flight (past the start delay); the others wait for a slot
        self.max_pending = max_pending  # tasks held, waiting ones included; beyond it a sample is skipped_busy
        self.running = 0
        self.served = served  # served requests in flight: a shadow starts only in a gap between them
        self.yield_max_s = yield_max_s  # how long a shadow waits for that gap before it is skipped_busy (0: no wait)
        self._waiters: collections.deque[asyncio.Future] = collections.deque()  # past the delay, waiting for a slot
        self.timeout_s = timeout_s
        self.start_delay_s = start_delay_s  # the served answer's last bytes go out before a shadow starts
        self.tasks: set[asyncio.Task] = set()  # strong references: a running shadow is never garbage-collected
        self.counts: dict[str, int] = {}

    def _count(self, exp: Experiment, outcome: str) -> None:
        self.counts[outcome] = self.counts.get(outcome, 0) + 1
        metrics.SHADOW_RUNS.labels(exp.name, outcome).inc()

    def submit(self, job: ShadowJob) -> bool:
        """Start ``job`` in the background; False (and counted) when at capacity. Never raises, never blocks."""
        try:
            if len(self.tasks) >= self.max_pending:
                self._count(job.experiment, "skipped_busy")
                return False
            task = asyncio.get_running_loop().create_task(self._run(job))
        except Exception:  # no loop, or anything else: the served answer must not notice
            return False
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return True

    async def wait(self) -> None:
        """Wait for the shadow runs in flight (tests, shutdown)."""
        while self.tasks:
            await asyncio.gather(*list(self.tasks), return_exceptions=True)

    async def _run(self, job: ShadowJob) -> None:
        if self.start_delay_s > 0:
            await asyncio.sleep(self.start_delay_s)  # waiting holds no run slot
        if self.served is not None and self.yield_max_s > 0 and not await self.served.wait_idle(self.yield_max_s):
            self._count(job.experiment, "skipped_busy")  # served traffic never paused long enough
            return
        while self.running >= self.max_concurrency:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
        self.running += 1
        try:
            await self._work(job)
        finally:
            self.running -= 1
            while self._waiters:  # hand the slot to the longest-waiting shadow
                waiter = self._waiters.popleft()
                if not waiter.done():
                    waiter.set_result(None)
                    break

    async def _work(self, job: ShadowJob) -> None:
        exp = job.experiment
        try:
            if exp.shadow is not None and await self.experiments.shadow_spent(exp) >= exp.shadow.budget_usd:
                self._count(exp, "skipped_budget")
                return
            if job.prepare is not None:
                job.request = await job.prepare()
            started = time.perf_counter()
            try:
                result = await asyncio.wait_for(self.generate(job.request), self.timeout_s)
            except TimeoutError:
                await self._failed(job, "timeout", started)
                return
            except Exception:
                await self._failed(job, "error", started)
                return
            latency_ms = (time.perf_counter() - started) * 1000
            if isinstance(result, tuple):
                result, latency_ms = result
            text, chunk = (result, None) if isinstance(result, str) else (result.text, result)
            prompt_tokens = chunk.prompt_tokens if chunk else 0
            completion_tokens = chunk.completion_tokens if chunk else 0
            model = (chunk.model if chunk else "") or job.request.model
            cost = cost_usd(model, prompt_tokens, completion_tokens) if chunk else 0.0
            if cost:
                await self.experiments.add_shadow_cost(exp, cost)
                metrics.SHADOW_COST.labels(exp.name).inc(cost)
            scores = await self._score(job, text)
            shadow_score = scores.get("shadow")
            await self.experiments.record_outcome(exp, "shadow", Outcome(
                latency_ms, prompt_tokens, completion_tokens, cost, score=shadow_score))
            if job.served_variant and scores.get("served") is not None:
                await self.experiments.record_score(exp, job.served_variant, scores["served"])
            self._count(exp, "ok")
            self._log(job, text, model, latency_ms, prompt_tokens, completion_tokens, cost, scores)
        except Exception:  # a shadow never surfaces an error
            logger.warning("shadow run failed", exc_info=True)
            self._count(exp, "error")

    async def _failed(self, job: ShadowJob, outcome: str, started: float) -> None:
        self._count(job.experiment, outcome)
        latency_ms = (time.perf_counter() - started) * 1000
        await self.experiments.record_outcome(job.experiment, "shadow", Outcome(latency_ms, error=True))

    async def _score(self, job: ShadowJob, text: str) -> dict[str, float]:
        """The judge's scores of the shadow answer and of the served one (same request, same rubric)."""
        if self.judge is None:
            return {}
        request = redact(request_text(job.request.messages, job.request.prompt)).text  # PII never reaches the judge
        out: dict[str, float] = {}
        for which, answer in (("shadow", text), ("served", job.served_text)):
            try:
                score = (await self.judge.score(request=request, answer=redact(answer).text)).score
            except (JudgeError, ValueError):
                metrics.EVAL_RUNS.labels("shadow", "failed").inc()
                continue
            metrics.EVAL_RUNS.labels("shadow", "scored").inc()
            variant = "shadow" if which == "shadow" else (job.served_variant or "-")
            metrics.EVAL_SCORE.labels(job.prompt, job.version, job.request.model, variant, which).observe(score)
            out[which] = score
        return out

    def _log(self, job: ShadowJob, text: str, model: str, latency_ms: float, prompt_tokens: int,
             completion_tokens: int, cost: float, scores: dict[str, float]) -> None:
        if self.request_log is None or not self.request_log.cfg.enabled:
            return
        req = job.request
        evaluation: dict[str, Any] = {"shadow": {
            "of": job.served_request_id, "experiment": job.experiment.name, "candidate": job.candidate,
            "served_variant": job.served_variant,
            "score": scores.get("shadow"), "served_score": scores.get("served"),
        }}
        self.request_log.log(RequestLogRecord(
            request_id=req.request_id, tenant=req.tenant, endpoint="chat", model=req.model, response_model=model,
            route=req.model, cache="bypass", path="shadow", messages=req.messages, response=text,
            evaluation=evaluation, latency_ms=latency_ms, prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens, cost_usd=cost))
