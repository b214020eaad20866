"""Shift boundaries: `06:00,14:00,22:00` (local time of the fleet view's host) and which shift a moment falls in."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, time, timedelta

__all__ = ["DEFAULT_SHIFTS", "Shift", "Shifts"]

DEFAULT_SHIFTS = "06:00,14:00,22:00"
_HHMM = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")


@dataclass(frozen=True, slots=True)
class Shift:
    """One shift on one day: `[start, end)` in Unix time, named by its start, e.g. `2024-06-01 06:00-14:00`."""

    start: float
    end: float
    name: str


class Shifts:
    """Shift start times of a day, e.g. `Shifts.parse("06:00,14:00,22:00")`; the last shift runs into the next
    day up to the first start."""

    def __init__(self, starts: list[time]) -> None:
        if not starts:
            raise ValueError("shifts: at least one start time is needed")
        self.starts = sorted(set(starts))

    @classmethod
    def parse(cls, text: str) -> Shifts:
        """`HH:MM[,HH:MM...]`; raises ValueError naming the bad entry."""
        starts = []
        for item in (part.strip() for part in text.split(",")):
            match = _HHMM.match(item)
            if match is None:
                raise ValueError(f"shifts: {item!r} is not a time of day HH:MM (e.g. 06:00,14:00,22:00)")
            starts.append(time(int(match.group(1)), int(match.group(2))))
        return cls(starts)

    def __str__(self) -> str:
        return ",".join(t.strftime("%H:%M") for t in self.starts)

    def at(self, ts: float) -> Shift:
        """The shift that Unix time `ts` falls in (local time)."""
        moment = datetime.fromtimestamp(ts).astimezone()
        day = moment.date()
        # Candidate starts: yesterday's last one, then today's, then tomorrow's first (for the end).
        candidates = [datetime.combine(day - timedelta(days=1), self.starts[-1])]
        candidates += [datetime.combine(day, t) for t in self.starts]
        candidates.append(datetime.combine(day + timedelta(days=1), self.starts[0]))
        stamps = [c.astimezone().timestamp() for c in candidates]
        i = max(k for k, s in enumerate(stamps[:-1]) if s <= ts)
        start, end = candidates[i], candidates[i + 1]
        return Shift(stamps[i], stamps[i + 1], f"{start:%Y-%m-%d %H:%M}-{end:%H:%M}")
