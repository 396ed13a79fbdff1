"""Circuit breaker per upstream: closed -> open after N failures in a window -> half-open probe after a
cool-down -> closed on success (or open again on failure). Injectable clock for tests.

``on_change(name, state)`` (optional) hears every breaker's state as it is created and on each transition:
the ingress and the fallback deployment pass ``app.observability.metrics.breaker_changed``, so the
``llmgw_breaker_state`` gauge holds every replica's pool and provider breakers (issue 14 #7). Open ->
half-open happens when the state is next read (a call, ``/metrics``, ``/readyz``, a health check)."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

from app.resilience.settings import BreakerConfig

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"
STATE_VALUE = {CLOSED: 0, HALF_OPEN: 1, OPEN: 2}


OnChange = Callable[[str, str], None]


class CircuitBreaker:
    def __init__(self, name: str, cfg: BreakerConfig, clock: Callable[[], float] = time.monotonic,
                 on_change: OnChange | None = None) -> None:
        self.name, self.cfg, self.clock = name, cfg, clock
        self.on_change = on_change
        self._state = CLOSED
        self._failures: deque[float] = deque()
        self._opened_at = 0.0
        self._probe_in_flight = False
        self._probe_started = 0.0
        self.transitions: list[tuple[str, str]] = []

    @property
    def state(self) -> str:
        if self._state == OPEN and self.clock() - self._opened_at >= self.cfg.cooldown_s:
            self._move(HALF_OPEN)
        return self._state

    def _move(self, new: str) -> None:
        if new != self._state:
            self.transitions.append((self._state, new))
            self._state = new
            if self.on_change is not None:
                self.on_change(self.name, new)
        if new == OPEN:
            self._opened_at = self.clock()
            self._probe_in_flight = False
        if new == CLOSED:
            self._failures.clear()

    def allow(self) -> bool:
        """May a call go to this upstream now? In half-open, one probe at a time is let through; a probe
        that has not reported back within a cool-down is taken as lost (so a hung call cannot wedge it)."""
        state = self.state
        if state == CLOSED:
            return True
        now = self.clock()
        if state == HALF_OPEN and (not self._probe_in_flight or now - self._probe_started >= self.cfg.cooldown_s):
            self._probe_in_flight, self._probe_started = True, now
            return True
        return False

    def abandon(self) -> None:
        """The call let through was cancelled before it could succeed or fail: free the probe slot."""
        self._probe_in_flight = False

    def record_success(self) -> None:
        self._probe_in_flight = False
        if self._state != CLOSED:
            self._move(CLOSED)

    def record_failure(self) -> None:
        now = self.clock()
        if self.state == HALF_OPEN:
            self._move(OPEN)
            return
        self._failures.append(now)
        while self._failures and now - self._failures[0] > self.cfg.window_s:
            self._failures.popleft()
        if len(self._failures) >= self.cfg.failure_threshold:
            self._move(OPEN)


class BreakerRegistry:
    def __init__(self, cfg: BreakerConfig, clock: Callable[[], float] = time.monotonic,
                 on_change: OnChange | None = None) -> None:
        self.cfg, self.clock, self.on_change = cfg, clock, on_change
        self.breakers: dict[str, CircuitBreaker] = {}

    def get(self, name: str) -> CircuitBreaker:
        if name not in self.breakers:
            self.breakers[name] = CircuitBreaker(name, self.cfg, self.clock, self.on_change)
            if self.on_change is not None:
                self.on_change(name, CLOSED)
        return self.breakers[name]

    def states(self) -> dict[str, str]:
        return {name: b.state for name, b in self.breakers.items()}
