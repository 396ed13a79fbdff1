"""Fire-and-forget cache stores keep read-your-writes; the router's embedding memo."""

from __future__ import annotations

import asyncio

import numpy as np

from app.embedding import EmbeddingMemo, embed_threads
from app.pending_writes import PendingWrites, call_on_loop


def test_lookup_waits_for_an_in_flight_store_under_its_key() -> None:
    async def main() -> list[str]:
        pending, events = PendingWrites(), []

        async def store() -> None:
            await asyncio.sleep(0.05)
            events.append("stored")

        start = pending.schedule("ctx-a", store)
        assert len(pending) == 1
        await call_on_loop(start)  # what the response's BackgroundTask does after the answer is sent
        await pending.wait("ctx-b")  # another context: nothing to wait for
        events.append("lookup-b")
        await pending.wait("ctx-a")
        events.append("lookup-a")
        return [*events, str(len(pending))]

    assert asyncio.run(main()) == ["lookup-b", "stored", "lookup-a", "0"]


def test_a_store_nobody_starts_still_runs_after_the_grace_period() -> None:
    async def main() -> tuple[bool, int]:
        pending, done = PendingWrites(), asyncio.Event()

        async def store() -> None:
            done.set()

        pending.schedule("k", store, grace_s=0.05)  # the response was never fully sent: no start()
        await asyncio.wait_for(pending.wait(), 1.0)
        return done.is_set(), len(pending)

    assert asyncio.run(main()) == (True, 0)


def test_a_store_runs_once_and_a_failed_store_does_not_block_lookups() -> None:
    async def main() -> tuple[int, int]:
        pending, calls = PendingWrites(), []

        async def failing() -> None:
            calls.append(1)
            raise RuntimeError("cache down")

        start = pending.schedule("k", failing, grace_s=0.01)
        start()
        start()
        await asyncio.sleep(0.05)  # the grace timer fires too: still one call
        await asyncio.wait_for(pending.wait("k"), 0.5)
        return len(calls), len(pending)

    assert asyncio.run(main()) == (1, 0)


def test_wait_is_bounded_by_its_timeout() -> None:
    async def main() -> float:
        pending = PendingWrites()
        pending.begin("k")  # never resolved
        t0 = asyncio.get_running_loop().time()
        await pending.wait("k", timeout=0.05)
        return asyncio.get_running_loop().time() - t0

    assert 0.04 <= asyncio.run(main()) < 0.5


def test_embedding_memo_is_a_bounded_lru_of_read_only_vectors() -> None:
    memo = EmbeddingMemo(maxsize=2)
    a, b, c = (np.full(4, i, dtype=np.float32) for i in range(3))
    assert memo.get("a") is None
    memo.put("a", a)
    memo.put("b", b)
    assert memo.get("a") is a  # "a" is now the most recent
    memo.put("c", c)  # evicts "b", the least recently used
    assert memo.get("b") is None and memo.get("a") is a and memo.get("c") is c
    assert len(memo) == 2 and memo.hits == 3 and memo.misses == 2
    assert not a.flags.writeable


def test_embed_threads_defaults_to_one(monkeypatch) -> None:
    monkeypatch.delenv("LLMGW_EMBED_THREADS", raising=False)
    assert embed_threads() == 1
    monkeypatch.setenv("LLMGW_EMBED_THREADS", "2")
    assert embed_threads() == 2
    monkeypatch.setenv("LLMGW_EMBED_THREADS", "x")
    assert embed_threads() == 1


def test_only_full_route_verdicts_are_remembered() -> None:
    from app.route_decision import MEMO_MAX_TEXT, RouteDecision, memoizable

    vec = np.zeros(384, dtype=np.float32)
    assert memoizable("q", RouteDecision("large", 0.9, vec, "classifier"))
    assert memoizable("q", RouteDecision("small", None, vec, "not-routed"))
    for reason in ("no-classifier", "classifier-error"):
        assert not memoizable("q", RouteDecision("small", None, vec, reason))
    assert not memoizable("q", RouteDecision("small", None, None, "no-embedding"))
    assert not memoizable("x" * (MEMO_MAX_TEXT + 1), RouteDecision("large", 0.9, vec, "classifier"))
