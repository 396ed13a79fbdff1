"""A vLLM general plugin: how long vLLM's CPU worker busy-waits after each step (``LLMGW_VLLM_BUSY_LOOP_S``).

vLLM on CPU always runs its model in a separate worker process (``vllm/platforms/cpu.py`` forces the
multiprocess executor) that reads each step from shared memory and, after every read, spins on
``sched_yield`` for ``SpinCondition.busy_loop_s`` = 1 s before it parks on a socket (vLLM 0.32
``shm_broadcast.py``; not configurable there). On a node where the front end shares the cores with the
engine, that spin takes a core from the gateway's own processes for a second after every step. With the
variable set, a reader spins that many seconds instead; unset (the default), nothing is changed. vLLM loads
``vllm.general_plugins`` entry points in every process it starts, the worker included, before it creates the
queues (``WorkerWrapperBase.init_worker``).
"""

from __future__ import annotations

import os

ENV = "LLMGW_VLLM_BUSY_LOOP_S"


def register() -> None:
    value = os.environ.get(ENV, "").strip()
    if not value:
        return
    seconds = float(value)
    if seconds < 0:
        raise ValueError(f"{ENV} must be >= 0, got {value!r}")
    from vllm.distributed.device_communicators import shm_broadcast

    cls = shm_broadcast.SpinCondition
    if getattr(cls, "_llmgw_busy_loop_s", None) is not None:
        cls._llmgw_busy_loop_s = seconds
        return
    original = cls.__init__

    def __init__(self, is_reader, context, notify_address, busy_loop_s: float = 1.0) -> None:
        original(self, is_reader, context, notify_address, busy_loop_s=cls._llmgw_busy_loop_s)

    cls._llmgw_busy_loop_s = seconds
    cls.__init__ = __init__
