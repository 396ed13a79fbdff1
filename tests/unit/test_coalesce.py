"""Token-stream coalescing: fewer, larger chunks; same text and final state; cancellation propagates."""

import asyncio

import pytest

from app.engines.base import coalesce, collect
from app.errors import UpstreamError
from app.generation import GenerationChunk


async def _tokens(n: int, delay: float, fail_at: int | None = None, log: list | None = None):
    try:
        for i in range(n):
            await asyncio.sleep(delay)
            if i == fail_at:
                raise UpstreamError("engine died")
            yield GenerationChunk(f"t{i} ", "length" if i == n - 1 else None, 5, i + 1, "m")
    except asyncio.CancelledError:
        if log is not None:
            log.append("cancelled")
        raise


def test_coalesce_merges_within_window_and_keeps_text() -> None:
    async def run():
        out = [c async for c in coalesce(_tokens(40, 0.002), window_s=0.03)]
        ref = await collect(_tokens(40, 0.0))
        return out, ref

    out, ref = asyncio.run(run())
    assert out[0].text == "t0 "  # first token is not delayed
    assert 2 < len(out) < 40
    assert "".join(c.text for c in out) == ref.text
    assert out[-1].finish_reason == "length" and out[-1].completion_tokens == 40


def test_coalesce_zero_window_is_passthrough() -> None:
    async def run():
        return [c async for c in coalesce(_tokens(5, 0), window_s=0)]

    assert len(asyncio.run(run())) == 5


def test_error_after_tokens_is_raised_after_flushing() -> None:
    async def run():
        got = []
        with pytest.raises(UpstreamError):
            async for c in coalesce(_tokens(10, 0.001, fail_at=6), window_s=0.01):
                got.append(c.text)
        return "".join(got)

    assert asyncio.run(run()) == "t0 t1 t2 t3 t4 t5 "


def test_closing_the_consumer_cancels_the_producer() -> None:
    log: list[str] = []

    async def run():
        gen = coalesce(_tokens(1000, 0.001, log=log), window_s=0.005)
        await anext(gen)
        await anext(gen)
        await gen.aclose()
        await asyncio.sleep(0.01)

    asyncio.run(run())
    assert log == ["cancelled"]
