"""Requests per minute, charged together with the reservation; a local pre-check keeps floods cheap.

The rpm subjects (key, tenant) are charged by the ``reserve`` call, in the same atomic script as
the tokens and the budget (Redis: one round trip for all three). ``admit`` therefore no longer talks
to the store: it refuses only what is *certain* to be refused. Every store reply tells this replica
each requests subject's GCRA ``tat`` (theoretical arrival time, ``reset_ms`` after "now"). Requests
are never refunded and other replicas can only push a ``tat`` later, so ``time the call was sent +
reset_ms`` is a lower bound of the store's ``tat``; a request that does not fit under that lower bound
does not fit in the store either. Everything else goes on to ``reserve``, which decides exactly.

A request that ends before ``reserve`` (a 400 from the input guardrails, an unpriced model, ...) is
charged by the ``settle`` finisher (:meth:`~app.policy.enforce.Enforcer.charge_unreserved`); a
request refused with a 429 is not counted (GCRA counts admitted requests only).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from app.policy.ratelimit import Admission, Subject, SubjectState, gcra


@dataclass(slots=True)
class PendingRequests:
    """The rpm subjects of one request, to be charged by ``reserve`` (or, failing that, by ``settle``)."""

    subjects: list[Subject]
    headers: dict[str, str] = field(default_factory=dict)  # estimated until reserve replaces them
    charged: bool = False


class RequestsGate:
    """Per-replica lower bounds of the requests subjects' ``tat`` (ms, on the policy clock)."""

    def __init__(self, max_items: int = 10_000) -> None:
        self.max_items = max_items
        self._tat: dict[str, float] = {}

    def learn(self, sent_ms: float, result: Admission, committed: bool) -> None:
        """Record what a store reply proves: committed subjects' new ``tat``, a refused subject's ``tat``."""
        for state in result.states:
            s = state.subject
            if s.kind != "requests" or not (committed or s == result.blocked):
                continue
            tat = sent_ms + state.reset_ms - 1.0  # the scripts round reset up to a whole ms
            if tat > self._tat.get(s.key, 0.0):
                if len(self._tat) >= self.max_items:
                    self._tat.clear()
                self._tat[s.key] = tat

    def check(self, subjects: list[Subject], now_ms: float) -> Admission:
        """Refused only when a subject surely has no room; else the estimated states (nothing is charged)."""
        states, blocked, retry = [], None, 0.0
        for s in subjects:
            ok, _, remaining, reset_ms, wait = gcra(self._tat.get(s.key, 0.0), now_ms, s.limit, s.cost)
            states.append(SubjectState(s, remaining, reset_ms))
            if not ok and blocked is None:
                blocked, retry = s, wait
        return Admission(blocked is None, states, blocked, retry)
