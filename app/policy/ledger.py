"""Spend ledger: reserve the worst case at admission, settle the actual when the answer ends.

Amounts are integer nano-USD. A subject is one budget window (e.g. key ``key_x``, day
``2026-12-02``) holding ``spent``, ``reserved`` and usage counters. ``reserve`` admits only when
``spent + reserved + amount <= limit`` on every limited subject (all or nothing; only those hold
reservations), so concurrent requests can never overspend; reservations expire (a crashed
replica's hold is released) and ``settle`` releases the hold, books the actual and reports alert
thresholds crossed for the first time.
Memory implementation here; Redis (one Lua script each for reserve and settle) in ledger_redis.py.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

NANO = 1_000_000_000


def to_nusd(usd: float) -> int:
    return round(usd * NANO)


@dataclass(frozen=True, slots=True)
class BudgetSubject:
    key: str  # "key:key_x:day:2026-12-02"
    limit_nusd: int | None  # None: tracked, not limited
    ttl_s: int  # how long the window's counters are kept (usage history)
    owner: str = ""  # "key" | "tenant"
    period: str = ""  # "day" | "month"


@dataclass(slots=True)
class Reservation:
    rid: str
    amount_nusd: int
    subjects: list[BudgetSubject]
    settled: bool = False


@dataclass(frozen=True, slots=True)
class BudgetCheck:
    allowed: bool
    blocked: BudgetSubject | None = None
    spent_nusd: int = 0
    reserved_nusd: int = 0


@dataclass(frozen=True, slots=True)
class Alert:
    subject: BudgetSubject
    threshold: float
    spent_nusd: int


@dataclass(slots=True)
class Usage:
    actual_nusd: int
    prompt_tokens: int = 0
    completion_tokens: int = 0
    savings_nusd: int = 0  # what a cache hit would have cost


class Ledger(Protocol):
    async def reserve(self, rid: str, amount_nusd: int, subjects: list[BudgetSubject],
                      hold_s: float) -> BudgetCheck: ...
    async def settle(self, reservation: Reservation, usage: Usage, thresholds: list[float]) -> list[Alert]: ...
    async def read(self, keys: list[str]) -> dict[str, dict[str, int]]: ...


def member(rid: str, amount: int) -> str:
    return f"{rid}|{amount}"


@dataclass
class _Window:
    fields: dict[str, int] = field(default_factory=dict)
    holds: dict[str, float] = field(default_factory=dict)  # member -> expiry (epoch s)


class MemoryLedger:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._w: dict[str, _Window] = {}
        self._clock = clock

    def _window(self, key: str) -> _Window:
        w = self._w.setdefault(key, _Window())
        now = self._clock()
        for m, expiry in list(w.holds.items()):
            if expiry <= now:
                del w.holds[m]
                w.fields["reserved"] = w.fields.get("reserved", 0) - int(m.rsplit("|", 1)[1])
        return w

    async def reserve(self, rid: str, amount_nusd: int, subjects: list[BudgetSubject],
                      hold_s: float) -> BudgetCheck:
        windows = [self._window(s.key) for s in subjects]
        for s, w in zip(subjects, windows, strict=True):
            spent, reserved = w.fields.get("spent", 0), w.fields.get("reserved", 0)
            if s.limit_nusd is not None and spent + reserved + amount_nusd > s.limit_nusd:
                return BudgetCheck(False, s, spent, reserved)
        for s, w in zip(subjects, windows, strict=True):
            if s.limit_nusd is not None:  # only limited windows hold reservations
                w.fields["reserved"] = w.fields.get("reserved", 0) + amount_nusd
                w.holds[member(rid, amount_nusd)] = self._clock() + hold_s
        return BudgetCheck(True)

    async def settle(self, reservation: Reservation, usage: Usage, thresholds: list[float]) -> list[Alert]:
        alerts: list[Alert] = []
        for s in reservation.subjects:
            w = self._window(s.key)
            if w.holds.pop(member(reservation.rid, reservation.amount_nusd), None) is not None:
                w.fields["reserved"] = w.fields.get("reserved", 0) - reservation.amount_nusd
            f = w.fields
            for name, value in (("spent", usage.actual_nusd), ("requests", 1), ("prompt_tokens", usage.prompt_tokens),
                                ("completion_tokens", usage.completion_tokens), ("savings", usage.savings_nusd)):
                f[name] = f.get(name, 0) + value
            if s.limit_nusd:
                for t in thresholds:
                    flag = f"alert:{t:g}"
                    if f["spent"] >= t * s.limit_nusd and not f.get(flag):
                        f[flag] = 1
                        alerts.append(Alert(s, t, f["spent"]))
        return alerts

    async def read(self, keys: list[str]) -> dict[str, dict[str, int]]:
        return {k: dict(self._window(k).fields) for k in keys if k in self._w}
