"""Calendar budget periods in a configured timezone: a day starts at 00:00, a month on the 1st at 00:00."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo


@dataclass(frozen=True, slots=True)
class Period:
    kind: str  # "day" | "month"
    label: str  # "2026-12-02" | "2026-12"
    start: float  # epoch seconds, inclusive
    end: float  # epoch seconds, exclusive

    def seconds_left(self, now: float) -> float:
        return max(self.end - now, 0.0)


class Calendar:
    def __init__(self, timezone: str = "UTC") -> None:
        self.tz = ZoneInfo(timezone)

    def day(self, now: float) -> Period:
        local = datetime.fromtimestamp(now, self.tz)
        start = datetime(local.year, local.month, local.day, tzinfo=self.tz)
        nxt = start + timedelta(days=1)
        end = datetime(nxt.year, nxt.month, nxt.day, tzinfo=self.tz)  # wall-clock midnight (DST-safe)
        return Period("day", start.strftime("%Y-%m-%d"), start.timestamp(), end.timestamp())

    def month(self, now: float) -> Period:
        local = datetime.fromtimestamp(now, self.tz)
        start = datetime(local.year, local.month, 1, tzinfo=self.tz)
        end = datetime(local.year + (local.month == 12), local.month % 12 + 1, 1, tzinfo=self.tz)
        return Period("month", start.strftime("%Y-%m"), start.timestamp(), end.timestamp())

    def period(self, kind: str, now: float) -> Period:
        return self.day(now) if kind == "day" else self.month(now)
