"""Deadlines and the fail-safe: a part still undecided `margin_ms` before its gate deadline fails safe, so the
PLC gets an answer in time; `fail` is the one way any thread closes a part without a model verdict."""

from __future__ import annotations

import heapq
import logging
import threading
import time
from collections.abc import Callable

from inspector.config import PipelineConfig
from inspector.ledger import IDLE_POLL_S, Ledger, Part, stamp
from inspector.protocols import Recipe
from inspector.stats import Stats
from inspector.throttled_log import ThrottledLog
from inspector.types import Decision, Timings, Verdict

__all__ = ["Watchdog"]

_OVERLOAD_CLEARS_AFTER_NS = 10e9  # the overload alarm clears once no part failed safe for this long


class Watchdog:
    """The deadlines heap, its thread (`run`) and fail-safe verdicts (`fail`).

    active: the active recipe (for a failed part not yet bound to one: a trigger waiting for its frame);
    emit: hands a verdict to the dispatch thread; done: the line has finished (the thread returns).
    """

    def __init__(
        self,
        config: PipelineConfig,
        camera_id: str,
        ledger: Ledger,
        stats: Stats,
        log_every: ThrottledLog,
        active: Callable[[], Recipe],
        emit: Callable[[Verdict, int], None],
        done: threading.Event,
    ) -> None:
        self.config = config
        self.camera_id = camera_id
        self.margin_ns = int(config.margin_ms * 1e6)
        self._ledger = ledger
        self._stats = stats
        self._log_every = log_every
        self._active = active
        self._emit = emit
        self._done = done
        # Deadlines to watch: (deadline_ns - margin, seq, part), a heap.
        self._deadlines: list[tuple[int, int, Part]] = []
        self._cv = threading.Condition()
        self._last_failsafe_ns = 0

    def watch(self, part: Part) -> None:
        if part.deadline_ns is None:
            return
        with self._cv:
            heapq.heappush(self._deadlines, (part.deadline_ns - self.margin_ns, part.seq, part))
            if self._deadlines[0][1] == part.seq:
                self._cv.notify()

    def run(self) -> None:
        """The watchdog thread: fail safe any part still undecided `margin_ms` before its deadline."""
        while not self._done.is_set():
            expired: list[Part] = []
            with self._cv:
                now = time.monotonic_ns()
                while self._deadlines and self._deadlines[0][0] <= now:
                    expired.append(heapq.heappop(self._deadlines)[2])
                if not expired:
                    wait = (self._deadlines[0][0] - now) / 1e9 if self._deadlines else IDLE_POLL_S
                    self._cv.wait(min(wait, IDLE_POLL_S))
            for part in expired:
                if self._ledger.is_open(part.seq):
                    self.fail(part, "uninspected", why="not decided before its gate deadline")
            if self._overload_stale():
                self._stats.clear_alarm("overload")

    def wake(self) -> None:
        """Wake the watchdog thread (so it re-checks for the end)."""
        with self._cv:
            self._cv.notify_all()

    def _overload_stale(self) -> bool:
        return bool(self._last_failsafe_ns) and time.monotonic_ns() - self._last_failsafe_ns > _OVERLOAD_CLEARS_AFTER_NS

    def fail(self, part: Part, reason: str, recipe: Recipe | None = None, why: str | None = None) -> None:
        """Close `part` with a fail-safe verdict (`uninspected`, `error` or `unregistered`) unless it was already
        decided. Not inspected (`uninspected`, `unregistered`): `failsafe_decision`; failed inspection: `on_error`.
        It is the verdict of `recipe`, else of the part's own (bound at capture), else of the active one."""
        recipe = recipe or part.recipe or self._active()
        thresholds = recipe.thresholds.get()
        uninspected = reason in {"uninspected", "unregistered"}
        decision = self.config.failsafe_decision if uninspected else thresholds.on_error
        verdict = Verdict(part.part_id, Decision(decision), [reason], thresholds_version=thresholds.version)
        stamp(verdict, part, recipe, self.camera_id, self.config.keep_images)
        now = time.monotonic_ns()
        verdict.timings = Timings(captured_ns=part.frame.captured_ns if part.frame else part.seen_ns, decided_ns=now)
        if self._ledger.close(part.seq, verdict, count_late=False):
            if why and reason == "uninspected":
                self._stats.set_alarm("overload", f"parts failing safe: {why}")
                self._last_failsafe_ns = now
                self._log_every("failsafe", 5.0, logging.WARNING, "part %s fails safe: %s", part.part_id, why)
            elif why and reason == "unregistered":  # the part, not the line: no overload alarm
                self._log_every("unregistered", 5.0, logging.WARNING, "part %s unregistered: %s", part.part_id, why)
            self._emit(verdict, part.dequeued_ns)
