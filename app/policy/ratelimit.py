"""Requests- and tokens-per-minute limits: GCRA over several subjects at once, in memory or Redis.

GCRA (a token bucket of ``limit`` refilled continuously at ``limit`` per minute): each subject keeps
one number, its theoretical arrival time ``tat``. A request of ``cost`` fits when
``max(tat, now) + cost * T - now <= 60 s`` with ``T = 60 s / limit``. All subjects of a request
(key rpm, key tpm, tenant rpm, tenant tpm) are checked and charged together or not at all
(Redis: one Lua script, one round trip). Token reservations are reconciled with :meth:`adjust`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from app.policy import redis_lua

WINDOW_MS = 60_000.0
_EPS = 1e-6


@dataclass(frozen=True, slots=True)
class Subject:
    key: str  # e.g. "key:key_ab12:tpm", "tenant:acme:rpm"
    kind: str  # "requests" | "tokens"
    limit: int  # per minute
    cost: int


@dataclass(frozen=True, slots=True)
class SubjectState:
    subject: Subject
    remaining: int
    reset_ms: float  # until the bucket is full again


@dataclass(frozen=True, slots=True)
class Admission:
    allowed: bool
    states: list[SubjectState]
    blocked: Subject | None = None
    retry_after_ms: float = 0.0


class RateLimiter(Protocol):
    async def acquire(self, subjects: list[Subject]) -> Admission: ...
    async def adjust(self, subjects: list[Subject]) -> None: ...  # ``cost`` = delta (negative refunds)


def gcra(tat: float, now: float, limit: int, cost: int) -> tuple[bool, float, int, float, float]:
    """(allowed, new_tat, remaining, reset_ms, retry_after_ms) of one subject."""
    t = WINDOW_MS / limit
    new_tat = max(tat, now) + cost * t
    used = new_tat - now
    if used > WINDOW_MS + _EPS:
        held = max(tat, now) - now
        return False, tat, max(int((WINDOW_MS - held + _EPS) // t), 0), held, used - WINDOW_MS
    return True, new_tat, max(int((WINDOW_MS - used + _EPS) // t), 0), used, 0.0


class MemoryRateLimiter:
    """Same semantics in process memory (one ingress replica). Atomic: no await between check and set."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._tat: dict[str, float] = {}
        self._clock = clock

    async def acquire(self, subjects: list[Subject]) -> Admission:
        now = self._clock() * 1000
        results = [(s, gcra(self._tat.get(s.key, 0.0), now, s.limit, s.cost)) for s in subjects]
        for s, (ok, _, _, _, retry) in results:
            if not ok:
                states = [SubjectState(x, r[2], r[3]) for x, r in results]
                return Admission(False, states, s, retry)
        for s, (_, new_tat, _, _, _) in results:
            self._tat[s.key] = new_tat
        return Admission(True, [SubjectState(s, r[2], r[3]) for s, r in results])

    async def adjust(self, subjects: list[Subject]) -> None:
        now = self._clock() * 1000
        for s in subjects:
            tat = max(self._tat.get(s.key, 0.0), now) + s.cost * WINDOW_MS / s.limit
            self._tat[s.key] = max(tat, now)


class RedisRateLimiter:
    """GCRA in Redis: every ingress replica shares one limit. Time is Redis's own clock unless injected."""

    def __init__(self, redis, prefix: str, clock: Callable[[], float] | None = None) -> None:
        self.p = prefix
        self._clock = clock
        self._acquire = redis.register_script(redis_lua.ACQUIRE)
        self._adjust = redis.register_script(redis_lua.ADJUST)

    def _now(self) -> str:
        return "" if self._clock is None else f"{self._clock() * 1000:.3f}"

    async def acquire(self, subjects: list[Subject]) -> Admission:
        if not subjects:
            return Admission(True, [])
        args: list[object] = [self._now()]
        for s in subjects:
            args += [s.limit, s.cost]
        res = [int(x) for x in await self._acquire(keys=[f"{self.p}:rl:{s.key}" for s in subjects], args=args)]
        states = [SubjectState(s, res[3 + 2 * i], float(res[4 + 2 * i])) for i, s in enumerate(subjects)]
        if res[0] == 1:
            return Admission(True, states)
        return Admission(False, states, subjects[res[1] - 1], float(res[2]))

    async def adjust(self, subjects: list[Subject]) -> None:
        subjects = [s for s in subjects if s.cost]
        if not subjects:
            return
        args: list[object] = [self._now()]
        for s in subjects:
            args += [s.limit, s.cost]
        await self._adjust(keys=[f"{self.p}:rl:{s.key}" for s in subjects], args=args)


def go_duration(ms: float) -> str:
    """A duration as OpenAI writes its reset headers (Go's format): ``20ms``, ``1s``, ``1.5s``, ``6m0s``."""
    ms = max(round(ms), 0)
    if ms == 0:
        return "0s"
    if ms < 1000:
        return f"{ms}ms"
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    seconds = f"{rest / 1000:.3f}".rstrip("0").rstrip(".")
    if hours:
        return f"{hours}h{minutes}m{seconds}s"
    if minutes:
        return f"{minutes}m{seconds}s"
    return f"{seconds}s"


def ratelimit_headers(states: list[SubjectState]) -> dict[str, str]:
    """OpenAI's six headers from the most restrictive subject of each kind."""
    headers: dict[str, str] = {}
    for kind in ("requests", "tokens"):
        of_kind = [s for s in states if s.subject.kind == kind]
        if not of_kind:
            continue
        tight = min(of_kind, key=lambda s: (s.remaining / s.subject.limit, -s.reset_ms))
        headers[f"x-ratelimit-limit-{kind}"] = str(tight.subject.limit)
        headers[f"x-ratelimit-remaining-{kind}"] = str(tight.remaining)
        headers[f"x-ratelimit-reset-{kind}"] = go_duration(tight.reset_ms)
    return headers


def retry_after_headers(retry_after_ms: float) -> dict[str, str]:
    return {"retry-after": str(max(math.ceil(retry_after_ms / 1000), 1)),
            "retry-after-ms": str(max(math.ceil(retry_after_ms), 1))}
