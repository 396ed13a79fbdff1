"""Load shapes as plain functions (no locust import, so they are unit-testable)."""

from __future__ import annotations


def phase_users(elapsed: float, run_time: float, peak: int) -> int | None:
    """Burst users wanted at ``elapsed`` s: a fifth of ``peak``, the peak for 30-60% of the run; None when over."""
    if elapsed >= run_time:
        return None
    base = max(1, peak // 5)
    return peak if 0.3 * run_time <= elapsed < 0.6 * run_time else base
