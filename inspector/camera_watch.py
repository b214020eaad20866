"""The camera's state as the line reports it: `up` while frames arrive, `lost` (with the reason) from a failed or
stalled read or a failed open until frames come again; listeners (the PLC link: retained `camera` topic and
`events`) hear of each change.

Fed by the capture thread (`frame()`, `lost()`); read by anyone (`snapshot()`). A listener that raises is logged,
never allowed to stop the capture thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

__all__ = ["CameraListener", "CameraWatch"]

log = logging.getLogger(__name__)

# Called with {"state": "up" | "lost" | "back", "reason", "source", "since" (wall s), "lost" (count), "down_s"?}.
CameraListener = Callable[[dict[str, Any]], None]


class CameraWatch:
    """State `starting` -> `up` (first frame) -> `lost` (reason) -> `up` again (a `back` change), ...

    source: the frame source, for its `description` and, where it has one (a grabber), its `stats()`
    (`frames_grabbed`, `frames_skipped`).
    """

    def __init__(self, source: Any) -> None:
        self.source = source
        self._lock = threading.Lock()
        self._listeners: list[CameraListener] = []
        self.state = "starting"
        self.reason = ""
        self.since = time.time()
        self.lost_count = 0

    def add_listener(self, listener: CameraListener) -> None:
        with self._lock:
            self._listeners.append(listener)

    def frame(self) -> None:
        """A frame arrived: the camera is up (cheap when it already was)."""
        if self.state == "up":
            return
        with self._lock:
            was, since = self.state, self.since
            self.state, self.reason, self.since = "up", "opened" if was == "starting" else "back", time.time()
            change = self._change("up" if was == "starting" else "back")
            if was == "lost":
                change["down_s"] = round(self.since - since, 3)
        self._tell(change)

    def lost(self, reason: str) -> None:
        """The camera failed, stalled or cannot be opened; only the first of a run of failures is a change."""
        with self._lock:
            if self.state == "lost":
                self.reason = reason  # the latest reason (e.g. open failures while it stays away)
                return
            self.state, self.reason, self.since = "lost", reason, time.time()
            self.lost_count += 1
            change = self._change("lost")
        self._tell(change)

    def snapshot(self) -> dict[str, Any]:
        """`{"state", "reason", "since", "frames_grabbed", "frames_skipped"}` (grabber counts 0 when the source has
        no grabber; the pipeline's camera dict has the loss and reopen counts)."""
        stats = getattr(self.source, "stats", None)
        counts = stats() if callable(stats) else {}
        with self._lock:
            return {
                "state": self.state,
                "reason": self.reason,
                "since": round(self.since, 3),
                "frames_grabbed": int(counts.get("frames_grabbed", 0)),
                "frames_skipped": int(counts.get("frames_skipped", 0)),
            }

    def _change(self, state: str) -> dict[str, Any]:
        return {
            "state": state,
            "reason": self.reason,
            "source": str(getattr(self.source, "description", type(self.source).__name__)),
            "since": self.since,
            "lost": self.lost_count,
        }

    def _tell(self, change: dict[str, Any]) -> None:
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener(change)
            except Exception:
                log.exception("camera listener %r failed", listener)
