"""The dispatch thread: verdicts go to the sinks here, so a slow or failing sink never stalls inference."""

from __future__ import annotations

import logging
import threading
from collections import deque

from inspector.ledger import IDLE_POLL_S
from inspector.protocols import Sink
from inspector.stats import Stats
from inspector.throttled_log import ThrottledLog
from inspector.types import Verdict

__all__ = ["Dispatcher"]

log = logging.getLogger("inspector.pipeline")  # one logger for the whole line


class Dispatcher:
    """A bounded queue of verdicts (producers wait rather than drop) and the thread that feeds `sinks`.

    sinks: the line's list, shared (a sink added before start sees every verdict). A sink that raises is logged
    and counted, the others go on. `done`: the line has finished (producers stop waiting);
    `workers_done`: no more verdicts will come (the thread returns once the queue is empty).
    """

    def __init__(
        self,
        sinks: list[Sink],
        size: int,
        stats: Stats,
        log_every: ThrottledLog,
        done: threading.Event,
        workers_done: threading.Event,
    ) -> None:
        self.sinks = sinks
        self.size = size
        self._stats = stats
        self._log_every = log_every
        self._done = done
        self._workers_done = workers_done
        self._queue: deque[tuple[Verdict, int]] = deque()
        self._cv = threading.Condition()

    def emit(self, verdict: Verdict, dequeued_ns: int) -> None:
        with self._cv:
            while len(self._queue) >= self.size and not self._done.is_set():
                self._cv.wait(IDLE_POLL_S)  # sinks behind: wait, never drop
            self._queue.append((verdict, dequeued_ns))
            self._cv.notify_all()

    def run(self) -> None:
        """The dispatch thread."""
        while True:
            with self._cv:
                while not self._queue:
                    if self._workers_done.is_set():
                        return
                    self._cv.wait(IDLE_POLL_S)
                verdict, dequeued_ns = self._queue.popleft()
                self._cv.notify_all()
            self._stats.record(verdict, dequeued_ns)
            for sink in self.sinks:
                try:
                    sink.handle(verdict)
                except Exception as exc:
                    self._stats.sink_error(sink.name)
                    self._stats.set_alarm(f"sink:{sink.name}", f"sink {sink.name} failed: {exc!r}")
                    self._log_every(f"sink:{sink.name}", 5.0, logging.ERROR, "sink %s failed: %r", sink.name, exc)

    def wake(self) -> None:
        """Wake the dispatch thread (so it re-checks for the end)."""
        with self._cv:
            self._cv.notify_all()

    def close_sinks(self) -> None:
        for sink in self.sinks:
            try:
                sink.close()
            except Exception:
                log.exception("closing sink %s failed", sink.name)
