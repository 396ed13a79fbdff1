"""Shadow runs off the served path: the ingress forwards tickets, the ``ShadowWorker`` deployment runs them.

Measured (docs/prompts.md): run on the ingress's event loop, a shadow cost the ingress ~4 ms of CPU and the pool
~3 ms (its own handle call), on the same 2 cores and event loops as the served requests. Here:

* ingress (:class:`ShadowForwarder`, same ``submit`` as ``ShadowRunner``): the finisher's job is appended to a
  batch; ``start_delay_s`` after the batch's first job, in a gap with no served request in flight on the
  replica (at most ``yield_max_s``, else the batch is ``skipped_busy``), the whole batch goes to the worker in
  **one** handle call, which returns as soon as the worker has queued it. Nothing else of a shadow runs there.
* worker (``deployments/shadow.py``, its process at ``worker_niceness``): builds each job from its ticket on its
  own registry (the shared Redis), checks the budget, calls the pool, scores, records and logs it
  (``ShadowRunner``); requests for one pool arriving together go out as one ``generate_batch`` call
  (:class:`PoolBatcher`), each with its own engine latency.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from app.generation import GenerationChunk, GenerationRequest
from app.observability import metrics
from app.prompts.experiments import Experiment
from app.prompts.shadow import InFlight, ShadowJob, ShadowTicket

logger = logging.getLogger(__name__)
HANDOFF_TIMEOUT_S = 10.0  # the worker answers a hand-over once the tickets are queued, not when they ran


class ShadowForwarder:
    """Ingress side: batches shadow tickets and hands them to the worker (see the module docstring)."""

    def __init__(self, send: Callable[[list[ShadowTicket]], Awaitable[Any]], *, start_delay_s: float = 0.25,
                 yield_max_s: float = 0.0, served: InFlight | None = None, max_pending: int = 256) -> None:
        self.send = send  # e.g. ``lambda tickets: worker_handle.run.remote(tickets)``
        self.start_delay_s = start_delay_s
        self.yield_max_s = yield_max_s
        self.served = served
        self.max_pending = max_pending  # tickets batched or being handed over; beyond it a sample is skipped_busy
        self.batch: list[ShadowTicket] = []
        self.sending = 0
        self.tasks: set[asyncio.Task] = set()
        self.counts: dict[str, int] = {}  # what this side decided (the worker counts the runs themselves)

    def _count(self, exp: Experiment, outcome: str, n: int = 1) -> None:
        self.counts[outcome] = self.counts.get(outcome, 0) + n
        metrics.SHADOW_RUNS.labels(exp.name, outcome).inc(n)

    def submit(self, job: ShadowJob) -> bool:
        """Queue ``job`` for the next hand-over; False (and counted) when at capacity. Never raises, never blocks."""
        try:
            if job.ticket is None:
                return False
            if len(self.batch) + self.sending >= self.max_pending:
                self._count(job.experiment, "skipped_busy")
                return False
            self.batch.append(job.ticket)
            if len(self.batch) == 1:  # the batch's first ticket schedules its hand-over
                task = asyncio.get_running_loop().create_task(self._hand_over())
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)
        except Exception:  # the served answer must not notice
            return False
        return True

    async def _hand_over(self) -> None:
        try:
            if self.start_delay_s > 0:
                await asyncio.sleep(self.start_delay_s)  # the served answer's last bytes leave first
            idle = self.served is None or self.yield_max_s <= 0 or await self.served.wait_idle(self.yield_max_s)
            batch, self.batch = self.batch, []
            if not idle:  # served traffic never paused long enough
                self._count_each(batch, "skipped_busy")
                return
            self.sending += len(batch)
            try:
                await asyncio.wait_for(self.send(batch), HANDOFF_TIMEOUT_S)
            except Exception:
                logger.warning("handing %d shadow runs to the worker failed", len(batch), exc_info=True)
                self._count_each(batch, "error")
            finally:
                self.sending -= len(batch)
        except Exception:  # never surfaces
            logger.warning("shadow hand-over failed", exc_info=True)

    def _count_each(self, batch: list[ShadowTicket], outcome: str) -> None:
        for ticket in batch:
            self._count(ticket.experiment, outcome)

    async def wait(self) -> None:
        """Wait for the hand-overs in flight (tests, shutdown)."""
        while self.tasks:
            await asyncio.gather(*list(self.tasks), return_exceptions=True)


def forward_to_worker(wiring: Any, handle: Any) -> ShadowForwarder:
    """Wire a ``PromptWiring``'s finisher to a ShadowWorker ``handle`` (instead of an in-ingress ShadowRunner)."""
    cfg = wiring.config.prompts.shadow
    forwarder = ShadowForwarder(lambda tickets: handle.run.remote(tickets), start_delay_s=cfg.start_delay_s,
                                yield_max_s=cfg.yield_max_s, served=wiring.render.inflight,
                                max_pending=cfg.max_pending)
    wiring.shadow = forwarder
    wiring.outcome.shadow = forwarder
    return forwarder


def uses_worker(config: Any) -> bool:
    """Whether the graph runs shadows in the ShadowWorker (``prompts.shadow.runner``; auto: when redis.url is set)."""
    runner = config.prompts.shadow.runner
    if not config.prompts.enabled or runner == "ingress":
        return False
    if not config.redis.url:
        if runner == "worker":
            raise ValueError("prompts.shadow.runner 'worker' needs redis.url: the worker reads the prompts and "
                             "writes the experiments' stats and budgets in the registry the ingress uses")
        return False
    return True


class PoolBatcher:
    """The worker's ``generate``: requests for one pool that arrive within ``window_s`` go out as one
    ``generate_batch`` handle call; each caller gets ``(answer, its own engine latency ms)`` or its own error."""

    def __init__(self, pools: dict[str, Any], window_s: float = 0.005, priority: int = 0) -> None:
        self.pools = pools
        self.priority = priority  # the pools' engine priority for shadows (vLLM: lower first; served 0)
        self.window_s = window_s
        self.pending: dict[str, list[tuple[GenerationRequest, asyncio.Future]]] = {}
        self.tasks: set[asyncio.Task] = set()

    async def __call__(self, req: GenerationRequest) -> tuple[GenerationChunk, float]:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        queue = self.pending.setdefault(req.model, [])
        queue.append((req, future))
        if len(queue) == 1:
            loop.call_later(self.window_s, self._start, req.model)
        return await future

    def _start(self, pool: str) -> None:
        task = asyncio.get_running_loop().create_task(self._send(pool, self.pending.pop(pool, [])))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _send(self, pool: str, items: list[tuple[GenerationRequest, asyncio.Future]]) -> None:
        try:
            results = await self.pools[pool].generate_batch.remote([req for req, _ in items], None, self.priority)
        except Exception as exc:
            for _, future in items:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, future), (chunk, latency_ms, error) in zip(items, results, strict=True):
            if future.done():  # its caller timed out
                continue
            if error is not None:
                future.set_exception(RuntimeError(error))
            else:
                future.set_result((chunk, latency_ms))


def renice_process(increment: int, pid: int | None = None) -> int:
    """Lower the CPU priority of every thread of ``pid`` (this process) by ``increment``; the new nice value.
    On Linux ``os.nice`` changes only the calling thread, and a Ray worker has many (new ones inherit it)."""
    tasks = Path(f"/proc/{pid or os.getpid()}/task")
    if not tasks.is_dir():  # not Linux: the process's one nice value
        return os.nice(increment) if pid is None else os.getpriority(os.PRIO_PROCESS, pid)
    value = os.getpriority(os.PRIO_PROCESS, pid or 0)
    for entry in tasks.iterdir():
        tid = int(entry.name)
        try:
            value = min(19, os.getpriority(os.PRIO_PROCESS, tid) + increment)
            os.setpriority(os.PRIO_PROCESS, tid, value)
        except OSError:  # the thread ended meanwhile
            continue
    return value
