"""The capacity gate: batch uses only spare pool capacity and backs off when the engine queues."""

from __future__ import annotations

import asyncio

from app.batch.gate import CapacityGate, PoolGate


def gate() -> PoolGate:
    return PoolGate("small", max_ongoing=64, max_num_seqs=32, share=0.25, busy_share=0.25)


def test_cap_is_a_share_of_max_ongoing_and_shrinks_while_realtime_runs() -> None:
    g = gate()
    assert (g.cap, g.busy_cap, g.limit) == (16, 4, 16)
    assert g.target(engine_unfinished=0) == 16
    g.in_flight = 10
    assert g.target(engine_unfinished=10) == 16  # only our own requests on the engine: stay at the cap
    assert g.target(engine_unfinished=12) == 4  # 2 real-time requests: the busy share


def test_backs_off_multiplicatively_when_the_engine_queues_and_recovers_additively() -> None:
    g = gate()
    g.in_flight = 16
    limits = [g.target(engine_unfinished=40) for _ in range(3)]  # 8 waiting beyond max_num_seqs
    assert limits == [8, 4, 2]
    g.in_flight = 2
    assert [g.target(engine_unfinished=2) for _ in range(3)] == [3, 4, 5]  # quiet again: +1 per poll
    assert g.target(10**6) == 2  # pool unreachable: halve again


async def test_slots_wait_for_room() -> None:
    g = gate()
    g.limit = 1
    order: list[str] = []

    async def work(name: str, hold: float) -> None:
        async with CapacityGate({"small": g}).slot("small"):
            order.append(f"{name}+")
            await asyncio.sleep(hold)
            order.append(f"{name}-")

    await asyncio.gather(work("a", 0.05), work("b", 0.0))
    assert order == ["a+", "a-", "b+", "b-"]
    async with CapacityGate({}).slot("unknown"):  # a pool without a gate is not limited
        pass


async def test_urgent_waiters_go_before_batch_lines() -> None:
    g = gate()
    g.limit = 1
    order: list[str] = []
    hold = asyncio.Event()

    async def work(name: str, urgent: bool) -> None:
        async with g.slot(urgent):
            order.append(name)
            if name == "first":
                await hold.wait()

    first = asyncio.create_task(work("first", False))
    await asyncio.sleep(0.01)
    lines = [asyncio.create_task(work(f"line{i}", False)) for i in range(2)]
    await asyncio.sleep(0.01)
    job = asyncio.create_task(work("job", True))
    await asyncio.sleep(0.01)
    hold.set()
    await asyncio.gather(first, job, *lines)
    assert order == ["first", "job", "line0", "line1"]
