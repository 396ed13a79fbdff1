"""Token-stream coalescing: fewer, larger chunks; same text and final state; cancellation propagates."""

import asyncio
import itertools

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


def test_window_starts_after_the_first_visible_text() -> None:
    """An engine's first token can detokenize to "" (half a UTF-8 character): the next chunk, the first
    visible text, must go out at once, not merged into a window."""

    async def tokens():
        for i, text in enumerate(["", "", "t2 ", "t3 ", "t4 ", "t5 "]):
            await asyncio.sleep(0.002 if i < 3 else 0)  # t3-t5 arrive back to back
            yield GenerationChunk(text, "length" if i == 5 else None, 5, i + 1, "m")

    async def run():
        return [c async for c in coalesce(tokens(), window_s=0.05)]

    out = asyncio.run(run())
    assert [c.text for c in out[:3]] == ["", "", "t2 "]  # each sent alone: no window before visible text
    assert out[2].completion_tokens == 3
    assert out[3].text == "t3 "  # the chunk after the first visible text goes at once too (it may complete a word)
    assert len(out) == 5 and out[4].text == "t4 t5 "  # then a window for what is queued
    assert out[4].finish_reason == "length"


def test_windows_grow_after_the_first_visible_text() -> None:
    """window / 8 first, doubling: the token that completes a held-back first word is not a window late."""

    async def run():
        return [c async for c in coalesce(_tokens(120, 0.002), window_s=0.16)]

    out = asyncio.run(run())
    sizes = [b.completion_tokens - a.completion_tokens for a, b in itertools.pairwise(out)]
    assert out[0].text == "t0 "
    assert sizes[0] < sizes[2]  # 20 ms of tokens, then 80 ms
    assert "".join(c.text for c in out) == "".join(f"t{i} " for i in range(120))


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
