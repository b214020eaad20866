"""The plant as the fleet view knows it: every `<line>/<camera>` under one topic prefix, plant totals per recipe
and per shift. Fed one MQTT message at a time (`ingest`, on the subscriber's thread), read as plain JSON
(`snapshot`, on the web server's threads); one lock between them.

Only what lines already publish is read: the retained `status`, the `heartbeat` and the `events`
(docs/mqtt.md). A malformed message is logged (rate-limited) and counted, never raised.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any

from inspector.fleet.camera import CameraView
from inspector.fleet.shifts import Shifts
from inspector.fleet.totals import ShiftBook, add_into, summed, with_rates
from inspector.throttled_log import ThrottledLog

__all__ = ["KINDS", "Fleet"]

log = logging.getLogger(__name__)

KINDS = ("status", "heartbeat", "events")
MAX_PAYLOAD = 256 * 1024  # a heartbeat is ~1 kB; anything this big is not one


class Fleet:
    """All lines under `prefix` (the `mqtt.prefix` of the lines, `inspector` by default)."""

    def __init__(self, prefix: str = "inspector", shifts: Shifts | None = None) -> None:
        self.prefix = prefix.strip("/")
        self.shifts = shifts or Shifts.parse("06:00,14:00,22:00")
        self._lock = threading.Lock()
        self._cameras: dict[tuple[str, str], CameraView] = {}
        self._book = ShiftBook(self.shifts)
        self._throttled = ThrottledLog(log)
        self.messages = 0
        self.malformed = 0
        self.connected = False

    def topics(self) -> list[str]:
        """The subscriptions: `<prefix>/+/+/status`, `.../heartbeat`, `.../events`."""
        return [f"{self.prefix}/+/+/{kind}" for kind in KINDS]

    def ingest(self, topic: str, payload: bytes, now: float | None = None, wall: float | None = None) -> bool:
        """Take one message; False (logged, counted) when it is malformed or not ours."""
        now = time.monotonic() if now is None else now
        wall = time.time() if wall is None else wall
        parts = topic.split("/")
        root = self.prefix.split("/")
        if len(parts) != len(root) + 3 or parts[: len(root)] != root or parts[-1] not in KINDS:
            return self._bad(topic, "not a status, heartbeat or events topic of a line")
        line, camera, kind = parts[len(root) :]
        if not payload and kind == "status":  # a cleared retained status: the line was retired
            with self._lock:
                self._cameras.pop((line, camera), None)
            return True
        try:
            if len(payload) > MAX_PAYLOAD:
                raise ValueError(f"payload of {len(payload)} bytes")
            body = json.loads(payload)
            if not isinstance(body, dict):
                raise ValueError("payload is not a JSON object")
            with self._lock:
                self.messages += 1
                view = self._cameras.get((line, camera))
                if view is None:
                    view = self._cameras[(line, camera)] = CameraView(line, camera)
                if kind == "status":
                    view.on_status(body, now)
                elif kind == "heartbeat":
                    deltas = view.on_heartbeat(body, now, self.shifts.at(wall).start)
                    self._book.add(wall, view.key, deltas)
                else:
                    view.on_event(body, now)
        except (ValueError, TypeError, KeyError) as exc:
            return self._bad(topic, str(exc)[:200])
        return True

    def _bad(self, topic: str, why: str) -> bool:
        with self._lock:
            self.malformed += 1
        self._throttled(f"bad:{topic}", 30.0, logging.WARNING, "fleet: ignoring a message on %s: %s", topic, why)
        return False

    def snapshot(self, now: float | None = None, wall: float | None = None) -> dict[str, Any]:
        """Everything the page, the JSON API and the metrics show:
        `{"ts", "connected", "lines": [row...], "counts": {state: n}, "recipes": {recipe: counts},
        "plant": counts, "shifts": [shift...], "messages", "malformed"}`."""
        now = time.monotonic() if now is None else now
        wall = time.time() if wall is None else wall
        with self._lock:
            views = sorted(self._cameras.values(), key=lambda v: (v.line, v.camera))
            rows = [v.row(now) for v in views]
            per_recipe: dict[str, dict[str, int]] = {}
            for view in views:
                add_into(per_recipe, view.recipes())
            shifts = self._book.report(wall)
            messages, malformed, connected = self.messages, self.malformed, self.connected
        counts = {state: sum(r["state"] == state for r in rows) for state in ("online", "stale", "offline", "unknown")}
        return {
            "ts": round(wall, 3),
            "connected": connected,
            "prefix": self.prefix,
            "shift_starts": str(self.shifts),
            "lines": rows,
            "counts": counts,
            "recipes": {name: with_rates(c) for name, c in sorted(per_recipe.items())},
            "plant": with_rates(summed(per_recipe)),
            "shifts": shifts,
            "messages": messages,
            "malformed": malformed,
        }
