"""Line statistics: latency windows, rates, per-class reject counts, alarms (`inspector.prometheus` exposes them).

`Stats` is fed by the pipeline's dispatch thread (one `record()` per verdict) and read by anyone (`snapshot()`
returns plain JSON-able dicts). The part ledger (seen / decided / in flight) lives in the pipeline, next to the
queues it describes; the pipeline merges both into `Pipeline.stats()`.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from typing import Any

import numpy as np

from inspector.types import Verdict

__all__ = ["STAGES", "LatencyWindow", "RateMeter", "Stats"]

# Stage names in `stage_ms`, in pipeline order (see `Stats.record`).
# `register` (to the recipe's golden reference) has samples only while a recipe with a reference inspects.
STAGES = ("wait", "register", "preprocess", "inference", "postprocess", "dispatch")


class LatencyWindow:
    """The last `size` samples (milliseconds) of one duration; percentiles over that window.

    A ring buffer rather than a histogram: exact percentiles for the dashboard, O(1) per sample, and old
    samples (warm-up, last week's incident) age out.
    """

    def __init__(self, size: int = 2048) -> None:
        self._values = np.zeros(size, np.float64)
        self._n = 0  # samples ever added
        self.size = size

    def add(self, ms: float) -> None:
        self._values[self._n % self.size] = ms
        self._n += 1

    @property
    def count(self) -> int:
        return self._n

    def values(self) -> np.ndarray:
        """(k,) float64 copy of the samples in the window, k = min(count, size)."""
        return self._values[: min(self._n, self.size)].copy()

    def summary(self) -> dict[str, float]:
        """{"p50", "p95", "p99", "min", "avg", "max"} in ms over the window (all 0.0 before any sample)."""
        v = self.values()
        if v.size == 0:
            return {k: 0.0 for k in ("p50", "p95", "p99", "min", "avg", "max")}
        p50, p95, p99 = np.percentile(v, [50, 95, 99])
        return {
            "p50": round(float(p50), 3),
            "p95": round(float(p95), 3),
            "p99": round(float(p99), 3),
            "min": round(float(v.min()), 3),
            "avg": round(float(v.mean()), 3),
            "max": round(float(v.max()), 3),
        }


class RateMeter:
    """Events per second over a sliding window of `window_s` seconds (monotonic clock)."""

    def __init__(self, window_s: float = 10.0) -> None:
        self.window_ns = int(window_s * 1e9)
        self._times: deque[int] = deque()
        self._start = time.monotonic_ns()

    def tick(self, now_ns: int | None = None) -> None:
        now = time.monotonic_ns() if now_ns is None else now_ns
        self._times.append(now)
        self._trim(now)

    def _trim(self, now: int) -> None:
        while self._times and now - self._times[0] > self.window_ns:
            self._times.popleft()

    def rate(self, now_ns: int | None = None) -> float:
        """Events per second in the window (over the time since start while that is shorter)."""
        now = time.monotonic_ns() if now_ns is None else now_ns
        self._trim(now)
        span = min(self.window_ns, max(now - self._start, 1))
        return len(self._times) * 1e9 / span


class Stats:
    """Counters, latencies, rates and alarms of one line (thread-safe)."""

    def __init__(self, window: int = 2048, rate_window_s: float = 10.0) -> None:
        self._lock = threading.Lock()
        self.latency = LatencyWindow(window)  # capture -> decision, inspected parts only
        self.stages = {name: LatencyWindow(window) for name in STAGES}
        self.parts = RateMeter(rate_window_s)
        self.rejects = RateMeter(rate_window_s)
        self.per_class_rejects: Counter[str] = Counter()
        self.sink_errors: Counter[str] = Counter()
        self._alarms: dict[str, dict[str, Any]] = {}

    def record(self, verdict: Verdict, dequeued_ns: int = 0) -> None:
        """Account one verdict as it leaves for the sinks.

        dequeued_ns: when an inference worker took the part (splits capture->preprocessed into wait and
        preprocess); 0 when unknown. Fail-safe verdicts count in rates but not in latencies (never inspected).
        """
        t = verdict.timings
        now = time.monotonic_ns()
        with self._lock:
            self.parts.tick(now)
            if verdict.rejected:
                self.rejects.tick(now)
                if not verdict.failsafe:
                    self.per_class_rejects.update(verdict.reasons)
            if verdict.failsafe or not (t.captured_ns and t.decided_ns):
                return
            self.latency.add((t.decided_ns - t.captured_ns) / 1e6)
            start = dequeued_ns or t.captured_ns
            if dequeued_ns:
                self.stages["wait"].add((dequeued_ns - t.captured_ns) / 1e6)
            if t.registered_ns:
                self.stages["register"].add((t.registered_ns - start) / 1e6)
                start = t.registered_ns
            if t.preprocessed_ns:
                self.stages["preprocess"].add((t.preprocessed_ns - start) / 1e6)
            if t.inferred_ns and t.preprocessed_ns:
                self.stages["inference"].add((t.inferred_ns - t.preprocessed_ns) / 1e6)
            if t.inferred_ns:
                self.stages["postprocess"].add((t.decided_ns - t.inferred_ns) / 1e6)
            self.stages["dispatch"].add((now - t.decided_ns) / 1e6)

    def sink_error(self, name: str) -> None:
        with self._lock:
            self.sink_errors[name] += 1

    def set_alarm(self, name: str, message: str) -> None:
        """Raise (or update the message of) alarm `name`; `since` keeps the time it was first raised."""
        with self._lock:
            alarm = self._alarms.get(name)
            if alarm is None:
                self._alarms[name] = {"name": name, "message": message, "since": time.time()}
            else:
                alarm["message"] = message

    def clear_alarm(self, name: str) -> None:
        with self._lock:
            self._alarms.pop(name, None)

    def alarms(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(a) for a in self._alarms.values()]

    def snapshot(self, sink_names: list[str] | None = None) -> dict[str, Any]:
        """{"rates", "latency_ms", "stage_ms", "per_class_rejects", "alarms", "sinks"}: plain JSON-able values."""
        with self._lock:
            names = list(sink_names or []) + [n for n in self.sink_errors if n not in (sink_names or [])]
            return {
                "rates": {
                    "parts_per_s": round(self.parts.rate(), 3),
                    "rejects_per_s": round(self.rejects.rate(), 3),
                },
                "latency_ms": {**self.latency.summary(), "count": self.latency.count},
                "stage_ms": {name: w.summary() for name, w in self.stages.items()},
                "per_class_rejects": dict(self.per_class_rejects),
                "alarms": [dict(a) for a in self._alarms.values()],
                "sinks": {name: {"errors": self.sink_errors.get(name, 0)} for name in names},
            }
