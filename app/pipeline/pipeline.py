"""The request path as an ordered list of stages, readable top to bottom.

``Pipeline.run(ctx)`` runs the request stages in order until one of them produced the answer
(the cache on a hit, generate otherwise), wraps the answer with the output stages (guard output),
and returns it with its chunk stream tracked: when the stream ends — completed, failed, or the client
went away — the finishers (settle, log) run exactly once with the actual usage. A stage that raises
ends the request there; the finishers still run (releasing reservations, logging the error).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from app.errors import GatewayError, find_gateway_error
from app.generation import GenerationChunk
from app.observability.tracing import start_span
from app.pipeline.context import Answer, RequestContext
from app.pipeline.gates import cancel_gates, discard, gate_error, pass_gates

logger = logging.getLogger(__name__)


class Stage(Protocol):
    """A request stage: reads the context, sets its own fields, or raises one GatewayError."""

    name: str

    async def __call__(self, ctx: RequestContext) -> None: ...


class OutputStage(Protocol):
    """An output stage: wraps the answer's chunk stream (e.g. redaction); may raise from the stream."""

    name: str

    def wrap(self, ctx: RequestContext, answer: Answer) -> Answer: ...


class Finisher(Protocol):
    """Runs once when the answer ended (ok, error or disconnect): settle, log."""

    name: str

    async def __call__(self, ctx: RequestContext) -> None: ...


def as_gateway_error(exc: BaseException) -> GatewayError:
    err = find_gateway_error(exc)
    if err is not None:
        return err
    return GatewayError("The gateway hit an internal error; the request was not completed.")


@dataclass
class Pipeline:
    stages: Sequence[Stage]
    output_stages: Sequence[OutputStage] = ()
    finishers: Sequence[Finisher] = ()
    _tasks: set[asyncio.Task] = field(default_factory=set)  # finishers of aborted streams, kept alive

    @property
    def names(self) -> list[str]:
        return [s.name for s in (*self.stages, *self.output_stages, *self.finishers)]

    def stage(self, name: str):
        """The stage (or output stage, or finisher) called ``name``, or None."""
        return next((s for s in (*self.stages, *self.output_stages, *self.finishers) if s.name == name), None)

    async def run(self, ctx: RequestContext) -> Answer:
        """The answer for ``ctx``; raises the request's GatewayError (after the finishers ran)."""
        try:
            for stage in self.stages:
                if ctx.answer is not None:
                    break
                with start_span(stage.name):
                    await stage(ctx)
            if ctx.gates:  # checks that ran beside generation: nothing leaves before they passed
                try:
                    await pass_gates(ctx)
                except BaseException:
                    await discard(ctx.answer)
                    ctx.answer = None
                    raise
            if ctx.answer is None:
                raise GatewayError("The request pipeline produced no answer.")
            answer = ctx.answer
            for out in self.output_stages:
                answer = out.wrap(ctx, answer)
        except BaseException as exc:
            if isinstance(exc, asyncio.CancelledError):
                ctx.aborted = True
                cancel_gates(ctx)
                raise_as: BaseException = exc
            else:
                # a gate that blocks wins over what failed beside it (as if it had run first)
                raise_as = (await gate_error(ctx) if ctx.gates else None) or exc
                ctx.error = as_gateway_error(raise_as)
                ctx.status = ctx.error.status_code
            for task in (ctx.lookup, ctx.embedding):
                if task is not None and not task.done():
                    task.cancel()
            await self._finish(ctx)
            if raise_as is exc:
                raise
            raise raise_as from None
        ctx.answer = answer
        return Answer(answer.first, self._tracked(ctx, answer), answer.path, answer.source, answer.cancel)

    async def _tracked(self, ctx: RequestContext, answer: Answer) -> AsyncIterator[GenerationChunk]:
        """Yield the remaining chunks, recording text and final usage; finish exactly once."""
        parts = [answer.first.text]
        ctx.final = answer.first
        completed = False
        try:
            if answer.first.finish_reason is None:
                async for chunk in answer.rest:
                    parts.append(chunk.text)
                    ctx.final = chunk
                    yield chunk
            completed = True
        except GeneratorExit:
            ctx.aborted = True
            raise
        except asyncio.CancelledError:
            ctx.aborted = True
            raise
        except BaseException as exc:
            ctx.error = as_gateway_error(exc)
            ctx.status = ctx.error.status_code
            raise
        finally:
            ctx.text = "".join(parts)
            if completed:
                await self._finish(ctx)
            else:  # cannot await in a closing/cancelled generator: finish in a task of its own
                if ctx.aborted and answer.cancel is not None:
                    answer.cancel()
                task = asyncio.get_running_loop().create_task(self._finish(ctx))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def reject(self, ctx: RequestContext, err: GatewayError) -> None:
        """A request refused before the stages ran (unreadable body): still counted and logged, once."""
        if ctx.error is None:
            ctx.error, ctx.status = err, err.status_code
        await self._finish(ctx)

    async def _finish(self, ctx: RequestContext) -> None:
        if ctx.extras.get("_finished"):
            return
        ctx.extras["_finished"] = True
        for callback in reversed(ctx._finishers):
            await self._safe(callback.__qualname__, callback, ctx)
        for finisher in self.finishers:
            await self._safe(finisher.name, finisher, ctx)

    @staticmethod
    async def _safe(name: str, fn, ctx: RequestContext) -> None:
        try:
            await fn(ctx)
        except Exception:  # a finisher must never turn an answer into an error
            logger.exception("pipeline finisher %s failed", name)
