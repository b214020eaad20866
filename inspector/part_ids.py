"""Part numbers that survive restarts: every part of a camera gets a `seq` (and a free-run part its `part_id`, the
same number) that the same line and camera never hand out again, and every start of the inspector a `run` number.

Three sources of numbers, one interface (`PartIds`: `run`, `next()`, `close()`):
- `PartIds(first, run)`: counting in memory, from `first` (a bare `Pipeline`: tests, benchmarks, the folder tool).
- `inspector.store.ids.StoredIds`: the service with a store. A high-water mark per line and camera in the store's
  database, reserved a block at a time and written to disk (fsync) before any number of the block is used: a
  `kill -9` (or a power cut) skips the rest of the block but never reuses a number. The next block is reserved on a
  thread of its own when half of the current one is used, so taking a number never waits on the disk. A clean stop
  writes back the exact mark, so a clean restart continues without a gap. `run` counts the starts.
- `clock_ids()`: the service without a store (nothing on disk to remember a mark): numbers start at the start time
  in milliseconds, which a later start cannot reach unless the line made over 1000 parts a second or the clock went
  back; `run` is that start time in milliseconds too.

docs/mqtt.md ("Part identity") says what the PLC may rely on.
"""

from __future__ import annotations

import threading
import time

__all__ = ["PartIds", "clock_ids"]


class PartIds:
    """Hands out the numbers of one camera's parts, thread-safe. `run`: this start of the inspector."""

    def __init__(self, first: int = 1, run: int = 0) -> None:
        if first < 0 or run < 0:
            raise ValueError("first and run must be >= 0")
        self.run = run
        self.first = first
        self._next = first
        self._lock = threading.Lock()

    def next(self) -> int:
        """The next number (never one handed out before)."""
        with self._lock:
            seq = self._next
            self._next += 1
            return seq

    def peek(self) -> int:
        """The number `next()` would return now."""
        with self._lock:
            return self._next

    def close(self) -> None:
        """Nothing to keep (the stored kind writes back its mark)."""


def clock_ids(now: float | None = None) -> PartIds:
    """Numbers from the start time in milliseconds (no store to remember a high-water mark)."""
    start_ms = round((time.time() if now is None else now) * 1000)
    return PartIds(first=start_ms, run=start_ms)
