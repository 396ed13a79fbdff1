"""Preemption: real-time work arriving on a pool where batch holds its full share cancels the newest batch
lines over the new limit; they are re-run later (not counted as attempts), each appears once, billed once."""

from __future__ import annotations

import asyncio

from app.batch.gate import CapacityGate, PoolGate
from tests.unit.test_batch_queue_redis import Executor, chat_line, create, env, read_file, start, upload, wait_status

__all__ = ["env"]  # the fixture, used by name


def test_preempt_excess_cancels_the_newest_preemptible_lines_only_for_realtime() -> None:
    g = PoolGate("small", max_ongoing=16, max_num_seqs=16, share=0.5, busy_share=0.25)  # cap 8, busy 2
    gates = CapacityGate({"small": g})
    hit: list[int] = []

    class L:  # stand-ins for leases
        def __init__(self, i: int, preemptible: bool = True) -> None:
            self.preempted = False
            self.preempt = (lambda: hit.append(i)) if preemptible else None

    g.leases = [L(i, preemptible=i != 7) for i in range(8)]
    g.in_flight = g.in_engine = 8
    g.target(8)
    assert g.preempt_excess() == 0  # only our own lines on the engine: nothing to make room for
    g.target(12)  # 4 real-time requests arrived
    assert g.limit == 2 and g.preempt_excess() == 6
    assert hit == [6, 5, 4, 3, 2, 1]  # the newest first; line 7 (an async request) is never preempted
    assert g.preempt_excess() == 0 and g.preempted == 6  # already preempted lines are not hit twice
    assert gates.gates["small"] is g


async def test_preempted_lines_are_re_run_and_appear_once(env) -> None:
    service, ledger, workers = env
    fid = await upload(service, [chat_line(i) for i in range(12)])
    batch = await create(service, fid)
    executor = Executor(delay=0.6)
    gate = PoolGate("small", max_ongoing=8, max_num_seqs=8, share=1.0, busy_share=0.25)  # cap 8, busy 2
    w = start(service, workers, executor, "w1", gate=CapacityGate({"small": gate}))
    w.cfg.max_attempts = 1  # a preemption must not count as an attempt
    while sum(lease.preempt is not None for lease in gate.leases) < 8:  # admitted and marked preemptible (the
        await asyncio.sleep(0.01)  # worker marks a line just after its slot: waiting on in_flight raced it)
    await gate.observe(engine_unfinished=3, preempt=True)  # 3 real-time requests (no batch call counted)
    assert gate.preempted == 6
    await asyncio.sleep(0.05)
    assert gate.in_flight <= 2  # the preempted lines left the pool at once
    await gate.observe(engine_unfinished=0)  # quiet again: the limit grows back, the lines re-run
    for _ in range(40):
        await gate.observe(engine_unfinished=0)
        await asyncio.sleep(0.02)
    b = await wait_status(service, batch["id"], {"completed"})
    assert (b["request_counts"]["completed"], b["request_counts"]["failed"]) == (12, 0)
    out = await read_file(service, b["output_file_id"])
    assert sorted(o["custom_id"] for o in out) == sorted(f"c{i}" for i in range(12))  # each once
    assert len(executor.calls) == 18  # 6 lines ran twice: preempted, then to the end
    assert ledger.settled == [("r1", 0.012)]  # billed once per line
