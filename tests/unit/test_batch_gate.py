"""The capacity gate: batch uses only spare pool capacity, waits for a sustained quiet window before taking
its full share, backs off when the engine queues, and gates `auto` lines on the pool they are routed to."""

from __future__ import annotations

import asyncio

import pytest

from app.batch.gate import CURRENT, CapacityGate, GatedPools, PoolGate, pools_for


def gate(**kw) -> PoolGate:
    return PoolGate("small", max_ongoing=64, max_num_seqs=32, share=0.25, busy_share=0.25, **kw)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_cap_is_a_share_of_max_ongoing_and_shrinks_while_realtime_runs() -> None:
    g = gate()
    assert (g.cap, g.busy_cap, g.limit) == (16, 4, 16)
    assert g.target(engine_unfinished=0) == 16
    g.in_flight = g.in_engine = 10
    assert g.target(engine_unfinished=10) == 16  # only our own requests on the engine: stay at the cap
    assert g.target(engine_unfinished=12) == 4  # 2 real-time requests: the busy share


def test_lines_not_yet_on_the_engine_do_not_hide_realtime_load() -> None:
    g = gate()
    g.in_flight, g.in_engine = 10, 2  # 8 admitted lines are still in the router / cache stages
    assert g.target(engine_unfinished=6) == 4  # 4 of the 6 engine requests are real-time ones


def test_full_cap_only_after_a_sustained_quiet_window() -> None:
    clock = Clock()
    g = gate(idle_window_s=1.0, clock=clock)
    assert g.limit == 4  # at start nothing says the pool is quiet
    assert g.target(0) == 4
    clock.now += 0.5
    assert g.target(0) == 4  # quiet, but not for long enough
    clock.now += 0.6
    assert [g.target(0) for _ in range(3)] == [8, 16, 16]  # the window passed: doubling up to the cap
    assert g.target(3) == 4  # a real-time request: down to the busy share at once
    clock.now += 0.9
    assert g.target(0) == 4  # the window starts again
    clock.now += 1.0
    assert [g.target(0) for _ in range(20)][-1] == 16  # up to the cap


def test_busy_share_zero_pauses_batch_while_realtime_runs() -> None:
    clock = Clock()
    g = PoolGate("small", max_ongoing=64, max_num_seqs=32, share=0.25, busy_share=0.0, idle_window_s=1.0,
                 clock=clock)
    assert g.limit == 0 and g.target(1) == 0
    clock.now += 5
    assert g.target(1) == 0  # real-time never stopped
    assert g.target(0) == 0
    clock.now += 1.0
    assert [g.target(0) for _ in range(6)] == [1, 2, 4, 8, 16, 16]


def test_backs_off_multiplicatively_when_the_engine_queues_and_recovers_additively() -> None:
    g = gate()
    g.in_flight = g.in_engine = 16
    limits = [g.target(engine_unfinished=40) for _ in range(3)]  # 8 waiting beyond max_num_seqs
    assert limits == [8, 4, 2]
    g.in_flight = g.in_engine = 2
    assert [g.target(engine_unfinished=2) for _ in range(3)] == [3, 4, 5]  # quiet again: +1 per poll
    assert g.target(10**6) == 2  # pool unreachable: halve again


async def test_slots_wait_for_room() -> None:
    g = gate()
    g.limit = 1
    order: list[str] = []
    gates = CapacityGate({"small": g})

    async def work(name: str, hold: float) -> None:
        async with gates.slot("small"):
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


def test_pools_for_names_the_pool_or_every_pool_for_auto() -> None:
    pool_for = pools_for({"auto": "", "small": "small", "tiny-large": "large"}, ["small", "large"])
    assert pool_for({"model": "small"}) == "small"
    assert pool_for({"model": "tiny-large"}) == "large"
    assert pool_for({"model": "auto"}) == ("small", "large")
    assert pool_for({"model": "nope"}) is None and pool_for("not a dict") is None


class Pools:
    def __init__(self) -> None:
        self.seen: list[tuple[str, int, int]] = []
        self.gates: dict[str, PoolGate] = {}

    async def generate(self, pool: str, req: object) -> str:
        g = self.gates[pool]
        self.seen.append((pool, g.in_engine, g.in_flight))
        await asyncio.sleep(0.01)
        return f"from {pool}"

    async def stream(self, pool: str, req: object):
        yield await self.generate(pool, req)


async def test_an_auto_line_waits_for_room_on_every_pool_then_holds_only_the_one_it_runs_on() -> None:
    small, large = gate(), PoolGate("large", max_ongoing=64, max_num_seqs=32, share=0.25, busy_share=0.25)
    gates = {"small": small, "large": large}
    cap, raw = CapacityGate(gates), Pools()
    raw.gates = gates
    pools = GatedPools(raw, gates)
    pool_for = pools_for({"auto": "", "small": "small", "large": "large"}, ["small", "large"])
    large.limit = 0  # the large pool has no spare capacity

    async def auto_line(routed_to: str) -> str:
        async with cap.slot(pool_for({"model": "auto"})) as lease:
            assert CURRENT.get() is lease
            return await pools.generate(routed_to, None)

    waiting = asyncio.create_task(auto_line("small"))
    await asyncio.sleep(0.05)
    assert not waiting.done() and small.in_flight == 0  # an auto line may land on `large`: it waits
    large.limit = 4
    await cap._notify()
    assert await waiting == "from small"
    # while it ran on small it held small only (the large slot was released when the pool was called)
    assert raw.seen == [("small", 1, 1)] and large.in_flight == 0
    assert (small.in_flight, small.in_engine, large.in_flight) == (0, 0, 0)

    async def streamed() -> list[str]:
        async with cap.slot(("small", "large")):
            return [c async for c in pools.stream("large", None)]

    assert await streamed() == ["from large"]
    assert raw.seen[-1] == ("large", 1, 1) and small.in_flight == 0 and large.in_engine == 0


async def test_a_failed_pool_call_still_releases_its_counts() -> None:
    g = gate()
    gates = {"small": g}

    class Broken:
        async def generate(self, pool, req):
            raise RuntimeError("pool down")

    with pytest.raises(RuntimeError):
        async with CapacityGate(gates).slot("small"):
            await GatedPools(Broken(), gates).generate("small", None)
    assert (g.in_flight, g.in_engine) == (0, 0)
