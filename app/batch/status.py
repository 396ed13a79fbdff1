"""OpenAI's batch status machine: which transitions exist and which timestamp each one sets.

validating → in_progress → finalizing → completed; validating → failed; in_progress → expired
(completion window passed); validating | in_progress | finalizing → cancelling → cancelled.
"""

from __future__ import annotations

from typing import Literal

from app.errors import InvalidRequestError

Status = Literal["validating", "failed", "in_progress", "finalizing", "completed", "expired", "cancelling",
                 "cancelled"]

TERMINAL: frozenset[str] = frozenset({"failed", "completed", "expired", "cancelled"})

TRANSITIONS: dict[str, frozenset[str]] = {
    "validating": frozenset({"in_progress", "failed", "cancelling"}),
    "in_progress": frozenset({"finalizing", "expired", "cancelling"}),
    "finalizing": frozenset({"completed", "expired", "cancelling"}),
    "cancelling": frozenset({"cancelled"}),
    "failed": frozenset(),
    "completed": frozenset(),
    "expired": frozenset(),
    "cancelled": frozenset(),
}

# The timestamp field a transition into each status sets (OpenAI's Batch object).
TIMESTAMP: dict[str, str] = {
    "in_progress": "in_progress_at",
    "finalizing": "finalizing_at",
    "completed": "completed_at",
    "failed": "failed_at",
    "expired": "expired_at",
    "cancelling": "cancelling_at",
    "cancelled": "cancelled_at",
}


def can_transition(current: str, new: str) -> bool:
    return new in TRANSITIONS.get(current, frozenset())


def sources(new: str) -> list[str]:
    """Every status from which ``new`` can be reached."""
    return [s for s, targets in TRANSITIONS.items() if new in targets]


def check_cancellable(current: str, batch_id: str) -> None:
    """A cancel of a finished batch is a 400 (OpenAI answers the same); cancelling twice is a no-op."""
    if current in TERMINAL:
        raise InvalidRequestError(f"Batch {batch_id} is already {current} and cannot be cancelled.",
                                  code="batch_not_cancellable")
