"""One line's camera as the fleet view knows it, from its `status`, `heartbeat` and `events` messages only.

State: `online` (birth seen, heard within two heartbeat intervals), `stale` (online, but silent for longer: a
frozen process, a pulled cable, or a kill before the broker noticed), `offline` (its `status` says so: the last
will the broker publishes when it dies, or a clean stop), `unknown` (heartbeats but no `status` yet).
Silence is measured on the fleet view's own monotonic clock, never against the line's wall clock.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Mapping
from typing import Any

from inspector.fleet.totals import add_into, subtract

__all__ = ["ALARM_HOLD_S", "STALE_BEATS", "CameraView"]

STALE_BEATS = 2.0  # silent for this many heartbeat intervals: stale
RATE_WINDOW_S = 10.0  # parts/s over this window of heartbeats
RECENT_S = 60.0  # fail-safe, late and overflow increases within this window are alarms
ALARM_HOLD_S = 600.0  # an `alarm` event stays on the row this long
_EVENT_COMMON = {"schema", "event", "ts", "seq", "alarm"}


class CameraView:
    """The latest of one `<line>/<camera>`: fed by `Fleet` (under its lock), read as a `row()`."""

    def __init__(self, line: str, camera: str) -> None:
        self.line = line
        self.camera = camera
        self.status = "unknown"
        self.reason = ""
        self.heartbeat_s = 1.0
        self.protocol: str | None = None
        self.heard: float | None = None  # monotonic time of the last birth or heartbeat
        self.beat: dict[str, Any] = {}
        self.history: deque[tuple[float, dict[str, int]]] = deque()  # (monotonic, counters) over RECENT_S
        self.alarm_events: deque[tuple[float, dict[str, Any]]] = deque(maxlen=20)
        self.recipes_before: dict[str, dict[str, int]] = {}  # counts of earlier process lives (restarts)
        self.restarts = 0

    @property
    def key(self) -> str:
        return f"{self.line}/{self.camera}"

    # -- messages ---------------------------------------------------------------------------------------------

    def on_status(self, payload: Mapping[str, Any], now: float) -> None:
        state = payload.get("status")
        if state not in {"online", "offline"}:
            raise ValueError(f"status must be 'online' or 'offline', got {state!r}")
        self.status = str(state)
        self.reason = str(payload.get("reason", ""))
        heartbeat_s = payload.get("heartbeat_s")
        if isinstance(heartbeat_s, int | float) and heartbeat_s > 0:
            self.heartbeat_s = float(heartbeat_s)
        self.protocol = payload.get("protocol") or self.protocol
        if self.status == "online":
            self.heard = now

    def on_heartbeat(self, payload: Mapping[str, Any], now: float, shift_start: float) -> dict[str, dict[str, int]]:
        """Take a heartbeat; returns the parts (recipe -> counts) it adds to what was known, for the shift book.

        A restart (heartbeat `seq` or `uptime_s` going back) starts a new process life: what the previous one
        counted is kept. The first heartbeat seen of a line counts its parts only when the line started in the
        current shift (`shift_start`); otherwise their shift is unknown.
        """
        if not isinstance(payload.get("counters"), Mapping) or not isinstance(payload.get("seq"), int):
            raise ValueError("heartbeat needs 'seq' (integer) and 'counters' (object)")
        recipes = _obj(payload.get("recipes"))
        first = not self.beat
        restarted = not first and (
            payload["seq"] < self.beat.get("seq", 0) or _num(payload.get("uptime_s")) < _num(self.beat.get("uptime_s"))
        )
        if restarted:
            add_into(self.recipes_before, _obj(self.beat.get("recipes")))
            self.restarts += 1
            self.history.clear()
        if first:
            started = _num(payload.get("ts")) - _num(payload.get("uptime_s"))
            deltas = subtract(recipes, {}) if started >= shift_start else {}
        else:
            deltas = subtract(recipes, {} if restarted else _obj(self.beat.get("recipes")))
        self.beat = dict(payload)
        self.heard = now
        if self.status == "offline":  # heartbeats again without a birth seen (e.g. a retained will replayed late)
            self.status, self.reason = "online", "heartbeat"
        counters = payload["counters"]
        link = _obj(payload.get("link"))
        sample = {
            "decided": _int(counters.get("decided")),
            "failsafe": _int(counters.get("failsafe")),
            "late": _int(link.get("late")),
            "overflow": _int(link.get("overflow")),
        }
        self.history.append((now, sample))
        while self.history and now - self.history[0][0] > RECENT_S:
            self.history.popleft()
        return deltas

    def on_event(self, payload: Mapping[str, Any], now: float) -> None:
        if payload.get("event") == "alarm":
            self.alarm_events.append((now, dict(payload)))

    # -- reading ----------------------------------------------------------------------------------------------

    def state(self, now: float) -> str:
        if self.status == "offline":
            return "offline"
        if self.heard is None:
            return "unknown"
        if now - self.heard > STALE_BEATS * self.heartbeat_s:
            return "stale"
        return "online" if self.status == "online" else "unknown"

    def rate(self) -> float | None:
        """Parts decided per second over the last RATE_WINDOW_S of heartbeats (None before two heartbeats)."""
        if len(self.history) < 2:
            return None
        t1, last = self.history[-1]
        t0, first = next(((t, s) for t, s in self.history if t1 - t <= RATE_WINDOW_S), self.history[0])
        if t1 - t0 <= 0:
            return None
        return round(max(last["decided"] - first["decided"], 0) / (t1 - t0), 3)

    def _recent_increase(self, key: str) -> int:
        if len(self.history) < 2:
            return 0
        return max(self.history[-1][1][key] - self.history[0][1][key], 0)

    def alarms(self, now: float) -> list[dict[str, Any]]:
        """Alarms read from the heartbeat and recent `alarm` events: `{"name", "level", "message"}`."""
        out: list[dict[str, Any]] = []
        beat, pipeline = self.beat, _obj(self.beat.get("pipeline"))
        model = _obj(pipeline.get("model"))

        def add(name: str, level: str, message: str) -> None:
            out.append({"name": name, "level": level, "message": message})

        if self.state(now) == "online":
            if pipeline.get("status_error"):
                add("status_error", "alarm", f"line status unreadable: {pipeline['status_error']}")
            if beat and not beat.get("ready") and not pipeline.get("paused"):
                add("not_ready", "alarm", "not ready: a part triggered now would fail safe")
        if model.get("fallback_model"):
            add("model_fallback", "alarm", f"fallback model {model.get('file')} runs: the configured one failed")
        if model.get("provider_fallback"):
            add("provider_fallback", "warn", f"runs on {model.get('provider')}, not the first provider asked for")
        for key, level, what in (
            ("failsafe", "warn", "fail-safe rejects"),
            ("late", "warn", "rejects not sent: past their gate"),
            ("overflow", "alarm", "messages lost from the offline queue"),
        ):
            if n := self._recent_increase(key):
                add(key, level, f"{n} {what} in the last {RECENT_S:.0f} s")
        for at, event in self.alarm_events:
            if now - at <= ALARM_HOLD_S:
                name = str(event.get("alarm"))
                details = ", ".join(f"{k} {v}" for k, v in event.items() if k not in _EVENT_COMMON)
                add(name, "alarm", f"{name}: {details}" if details else name)
        return out

    def recipes(self) -> dict[str, dict[str, int]]:
        """Parts per recipe over every process life seen."""
        total: dict[str, dict[str, int]] = {}
        add_into(total, self.recipes_before)
        add_into(total, _obj(self.beat.get("recipes")))
        return total

    def row(self, now: float) -> dict[str, Any]:
        """The fleet table's row (plain JSON)."""
        beat = self.beat
        counters = _obj(beat.get("counters"))
        pipeline = _obj(beat.get("pipeline"))
        model = _obj(pipeline.get("model"))
        latency = _obj(beat.get("latency_ms"))
        decided, passed = _int(counters.get("decided")), _int(counters.get("passed"))
        return {
            "key": self.key,
            "line": self.line,
            "camera": self.camera,
            "state": self.state(now),
            "status": self.status,
            "reason": self.reason,
            "silent_s": round(now - self.heard, 1) if self.heard is not None else None,
            "heartbeat_s": self.heartbeat_s,
            "ready": beat.get("ready") if beat else None,
            "paused": bool(pipeline.get("paused")),
            "recipe": pipeline.get("recipe"),
            "model": {k: model.get(k) for k in ("file", "sha256", "precision", "provider", "selftest")},
            "rate": self.rate(),
            "decided": decided,
            "passed": passed,
            "rejected": _int(counters.get("rejected")),
            "failsafe": _int(counters.get("failsafe")),
            "yield": round(passed / decided, 4) if decided else None,
            "p50_ms": latency.get("p50"),
            "p99_ms": latency.get("p99"),
            "alarms": self.alarms(now),
            "dashboard_url": beat.get("dashboard_url"),
            "protocol": beat.get("protocol") or self.protocol,
            "uptime_s": beat.get("uptime_s"),
            "restarts": self.restarts,
            "seen_at": time.time() - (now - self.heard) if self.heard is not None else None,
        }


def _obj(value: Any) -> Mapping[str, Any]:
    """`value` when it is a JSON object, else an empty one: a malformed field costs its own facts only."""
    return value if isinstance(value, Mapping) else {}


def _num(value: Any) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0


def _int(value: Any) -> int:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0
