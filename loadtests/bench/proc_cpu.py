"""CPU time per gateway process over a benchmark, split by what was being sent (loadtests/bench/shadow_gateway.py).

A thread reads ``utime + stime`` of every Ray / HAProxy process on this machine from ``/proc/<pid>/stat`` every
``interval_s``; ``by_arm`` then charges each interval's CPU to the arm the schedule was sending at its
midpoint (intervals in a block's settle window or spanning two blocks are dropped), and divides by the
requests of that arm sent in the counted intervals: CPU ms per request, per process, shadow on vs off.
The sampler itself is a few ``/proc`` reads per interval (in the load generator's process, not a replica's).
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path

TICK_S = 1.0 / os.sysconf("SC_CLK_TCK")
_REPLICA = re.compile(r"ServeReplica:[^:]+:([\w-]+)")
_OTHER = re.compile(r"ray::(\w+)|(haproxy)")


def process_names() -> dict[int, str]:
    """pid -> short name (Ingress, pool-small, ShadowWorker, ServeController, haproxy, ...) of this machine's Ray
    processes; several processes of one name get ``#2``, ``#3``."""
    out: dict[int, str] = {}
    seen: dict[str, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
        except OSError:
            continue
        replica, other = _REPLICA.search(cmd[:200]), _OTHER.search(cmd[:200])
        if replica is not None:
            name = replica.group(1)
        elif other is not None and other.group(1) != "IDLE":
            name = other.group(1) or other.group(2)
        else:
            continue
        seen[name] = seen.get(name, 0) + 1
        out[int(entry.name)] = name if seen[name] == 1 else f"{name}#{seen[name]}"
    return out


def stat_fields(pid: int | str) -> list[str]:
    """``/proc/<pid>/stat`` from its "state" field on (after the command name, which may hold spaces)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def nice_of(pid: int) -> int | None:
    """The nice value of the process's main thread (field 19 of stat)."""
    try:
        return int(stat_fields(pid)[16])
    except (OSError, IndexError, ValueError):
        return None


def cpu_s(pid: int | str) -> float | None:
    """CPU seconds (user + system, fields 14 and 15 of stat) the process used so far; None once it is gone."""
    try:
        fields = stat_fields(pid)
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) * TICK_S


class CpuSampler:
    def __init__(self, interval_s: float = 0.25) -> None:
        self.interval_s = interval_s
        self.names = process_names()
        self.nice = {name: nice_of(pid) for pid, name in self.names.items()}  # e.g. the ShadowWorker's 10
        self.samples: list[tuple[float, dict[str, float]]] = []  # (perf_counter, name -> cumulative CPU s)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="cpu-sampler", daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            now = time.perf_counter()
            self.samples.append((now, {n: c for pid, n in self.names.items() if (c := cpu_s(pid)) is not None}))
            self._stop.wait(self.interval_s)

    def __enter__(self) -> CpuSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def by_arm(self, t0: float, arm_at: Callable[[float], tuple[str, bool] | None],
               sent: Callable[[str, float, float], int]) -> dict[str, dict[str, float]]:
        """{arm: {process: CPU ms per request sent}} (plus ``_cores``: the arm's mean busy cores over those
        processes); ``arm_at(offset)`` is (arm, counted) at an offset from the phase start ``t0``, ``sent(arm, a,
        b)`` the requests of that arm scheduled in [a, b)."""
        cpu: dict[str, dict[str, float]] = {}
        wall: dict[str, float] = {}
        n: dict[str, int] = {}
        for (ta, a), (tb, b) in zip(self.samples, self.samples[1:], strict=False):
            oa, ob = ta - t0, tb - t0
            start, end = arm_at(oa), arm_at(ob)
            if start is None or end is None or start != end or not start[1]:
                continue
            arm = start[0]
            wall[arm] = wall.get(arm, 0.0) + (tb - ta)
            n[arm] = n.get(arm, 0) + sent(arm, oa, ob)
            into = cpu.setdefault(arm, {})
            for name, value in b.items():
                if name in a:
                    into[name] = into.get(name, 0.0) + value - a[name]
        out: dict[str, dict[str, float]] = {}
        for arm, per in cpu.items():
            count = max(1, n[arm])
            row = {name: round(s * 1000 / count, 3) for name, s in sorted(per.items(), key=lambda kv: -kv[1])
                   if s > 0}
            row["_cores"] = round(sum(per.values()) / wall[arm], 3) if wall[arm] else 0.0
            row["_requests"] = n[arm]
            out[arm] = row
        return out
