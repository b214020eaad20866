"""The bounded buffer between the capture thread and the inference workers."""

from __future__ import annotations

import math
import threading
from collections import deque

from inspector.ledger import IDLE_POLL_S, Ledger, Part

__all__ = ["PartBuffer"]


class PartBuffer:
    """Parts with their frames, waiting for a worker; at most `size`.

    When full, `put` either waits (`wait_when_full`, until `stop` is set) or hands back the oldest waiting part
    that is still undecided, for the caller to fail safe (a live camera's surplus must not stall capture).
    """

    def __init__(self, size: int, ledger: Ledger, wait_when_full: bool, stop: threading.Event) -> None:
        self.size = size
        self.wait_when_full = wait_when_full
        self._ledger = ledger
        self._stop = stop
        self._parts: deque[Part] = deque()
        self._cv = threading.Condition()
        self._idle_workers = 0

    def __len__(self) -> int:
        with self._cv:
            return len(self._parts)

    def put(self, part: Part) -> Part | None:
        """Add `part`; returns the part dropped to make room, if any."""
        dropped: Part | None = None
        with self._cv:
            if self.wait_when_full:
                while len(self._parts) >= self.size and not self._stop.is_set():
                    self._cv.wait(IDLE_POLL_S)
            else:
                while len(self._parts) >= self.size:
                    oldest = self._parts.popleft()
                    if self._ledger.is_open(oldest.seq):  # else the watchdog already answered for it
                        dropped = oldest
                        break
            self._parts.append(part)
            self._cv.notify()
        return dropped

    def take(self, limit: int, ended: threading.Event) -> list[Part] | None:
        """Up to `limit` waiting parts, sharing them among idle workers; None when there will be no more (the
        buffer is empty and `ended` is set)."""
        with self._cv:
            self._idle_workers += 1
            try:
                while not self._parts:
                    if ended.is_set():
                        return None
                    self._cv.wait(IDLE_POLL_S)
                share = math.ceil(len(self._parts) / max(self._idle_workers, 1))
                n = max(1, min(limit, share))
                parts = [self._parts.popleft() for _ in range(min(n, len(self._parts)))]
                self._cv.notify_all()  # room for a waiting capture thread
                return parts
            finally:
                self._idle_workers -= 1

    def drain(self) -> list[Part]:
        """Take every waiting part out (a lost camera: their frames predate the loss)."""
        with self._cv:
            parts, self._parts = list(self._parts), deque()
            self._cv.notify_all()
            return parts

    def clear(self) -> None:
        with self._cv:
            self._parts.clear()
            self._cv.notify_all()

    def wake_all(self) -> None:
        """Wake every thread waiting on the buffer (so it re-checks for the end)."""
        with self._cv:
            self._cv.notify_all()
