"""Checks that run beside generation instead of before it (``ingress.overlap_checks``).

The injection classifier (a MiniLM pass) and the semantic cache lookup cost milliseconds of CPU that a
self-hosted pool's prefill can hide: the pool starts generating while they run, and the answer waits for
them. No answer, no first chunk and no provider call leaves the gateway before every gate passed; a gate
that blocks cancels the speculative generation and its error is the request's. Only pools speculate:
a paid provider or the stale cache is called after the gates (their chain step's ``before``).
"""

from __future__ import annotations

import asyncio
import contextlib

from app.errors import find_gateway_error
from app.pipeline.context import Answer, RequestContext


async def pass_gates(ctx: RequestContext) -> None:
    """Wait for every gate; raise the first one's error (in the order the stages added them)."""
    for gate in list(ctx.gates):
        await asyncio.shield(gate)  # a gate outlives a cancelled waiter: its error stays the request's


def cancel_gates(ctx: RequestContext) -> None:
    for gate in ctx.gates:
        gate.cancel()


async def gate_error(ctx: RequestContext) -> BaseException | None:
    """After a failure elsewhere: the error of a gate that blocked (it wins, as if it had run first)."""
    for gate in list(ctx.gates):
        try:
            await gate
        except asyncio.CancelledError:
            continue
        except Exception as exc:
            if find_gateway_error(exc) is not None:
                return exc
    return None


async def discard(answer: Answer | None) -> None:
    """Abort an answer nobody will read (a speculative generation that lost to a gate or a cache hit)."""
    if answer is None:
        return
    if answer.cancel is not None:
        answer.cancel()
    aclose = getattr(answer.rest, "aclose", None)
    if aclose is not None:
        with contextlib.suppress(Exception):
            await aclose()


class LookupHit(Exception):
    """A step that does not speculate found the racing cache lookup answered: it must not run."""


async def hold(ctx: RequestContext) -> None:
    """What a non-speculating chain step waits for: every gate, and the racing cache lookup's miss."""
    await pass_gates(ctx)
    if ctx.lookup is not None and await asyncio.shield(ctx.lookup) is not None:
        raise LookupHit()
