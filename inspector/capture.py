"""The capture thread: open the source (and reopen it with back-off when lost), read frames, make parts of them
(free-run: one per frame; triggered: the first frame after each trigger) and put them in the buffer.

It never waits on inference: when the buffer is full the oldest waiting part fails safe (unless the buffer was
told to wait, for a source that is not live). A frame's capture time is the source's own (`last_capture_ns`:
stream clock, sensor or driver time; see docs/cameras.md) where it gives one, else the time it was read, so
deadlines count from the camera. The camera's state (up, lost with the reason, back) goes to `watch`
(`inspector.camera_watch`); on a loss the parts still waiting for inspection fail safe (their frames predate it)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from inspector.camera_watch import CameraWatch
from inspector.ledger import Ledger, Part, PendingTriggers
from inspector.part_buffer import PartBuffer
from inspector.protocols import Recipe
from inspector.sources import Backoff
from inspector.stats import Stats
from inspector.throttled_log import ThrottledLog
from inspector.types import Frame, FrameSource, SourceError

__all__ = ["Capture"]

log = logging.getLogger("inspector.pipeline")  # one logger for the whole line


class Capture:
    """One camera's capture thread (`run`) and its state, `camera` (connected, reconnects, lost, open failures).

    stop: set to stop capturing (the thread sets it too when it ends: no new parts from then on); paused: frames
    are read but make no parts; done: set when the thread has ended. watch: registers a part's deadline; fail:
    closes a part fail-safe. active: the active recipe, read once per frame: the part is bound to it (and a
    free-run part gets its gate budget, `gate_ns(recipe)`), so a changeover lands between two captured parts.
    """

    def __init__(
        self,
        source: FrameSource,
        *,
        camera_id: str,
        triggered: bool,
        active: Callable[[], Recipe],
        gate_ns: Callable[[Recipe], int | None],
        reconnect: tuple[float, float],
        ledger: Ledger,
        pending: PendingTriggers,
        buffer: PartBuffer,
        stats: Stats,
        log_every: ThrottledLog,
        watch: Callable[[Part], None],
        fail: Callable[..., None],
        stop: threading.Event,
        paused: threading.Event,
    ) -> None:
        self.source = source
        self.camera_id = camera_id
        self.triggered = triggered
        self._active = active
        self._gate_ns = gate_ns
        self._backoff = Backoff(*reconnect)
        self._ledger = ledger
        self._pending = pending
        self._buffer = buffer
        self._stats = stats
        self._log_every = log_every
        self._watch = watch
        self._fail = fail
        self._stop = stop
        self._paused = paused
        self.done = threading.Event()
        self.camera: dict[str, Any] = {
            "description": getattr(source, "description", type(source).__name__),
            "connected": False,
            "reconnects": 0,
            "lost": 0,
            "open_failures": 0,
        }
        self.watch = CameraWatch(source)

    def run(self) -> None:
        """The capture thread."""
        try:
            self._capture()
        except Exception:  # a bug here must not leave parts without verdicts: drain and say so
            log.exception("capture thread failed")
            self._stats.set_alarm("capture", "capture thread failed; see the log")
        finally:
            try:
                self.source.close()
            except Exception:
                log.exception("closing %s failed", self.camera["description"])
            self.camera["connected"] = False
            self._stop.set()  # no new parts from here on (a trigger now fails safe at once)
            self.done.set()
            self._buffer.wake_all()

    def _open_source(self) -> bool:
        """Open (or reopen) the source, waiting with back-off between attempts; False when stopping."""
        while not self._stop.is_set():
            try:
                self.source.open()
            except SourceError as exc:
                self.camera["open_failures"] += 1
                delay = self._backoff.next_delay()
                self._stats.set_alarm("camera", f"cannot open camera: {exc}; retrying in {delay:.1f} s")
                self.watch.lost(f"cannot open: {exc}")
                self._log_every("open", 10.0, logging.WARNING, "cannot open %s: %s", self.camera["description"], exc)
                self._stop.wait(delay)
                continue
            self._backoff.reset()
            self.camera["connected"] = True
            self._stats.clear_alarm("camera")
            return True
        return False

    def _capture(self) -> None:
        first = True
        while not self._stop.is_set():
            if not self.camera["connected"]:
                if not first:
                    # Lost earlier: wait before reopening so a flapping camera does not spin.
                    self._stop.wait(self._backoff.next_delay())
                if not self._open_source():
                    return
                if not first:
                    self.camera["reconnects"] += 1
                    log.info("reopened %s", self.camera["description"])
                first = False
            try:
                item = self.source.read()
            except SourceError as exc:
                self.camera["connected"] = False
                self.camera["lost"] += 1
                self._stats.set_alarm("camera", f"camera lost: {exc}; reopening")
                log.warning("lost %s: %s", self.camera["description"], exc)
                self.watch.lost(str(exc))
                # Parts still waiting have frames from before the loss: fail safe (no `why`: not an overload).
                for part in self._buffer.drain():
                    self._fail(part, "uninspected")
                try:
                    self.source.close()
                except Exception:
                    log.exception("closing %s failed", self.camera["description"])
                continue
            read_ns = time.monotonic_ns()
            if item is None:
                log.info("%s ended", self.camera["description"])
                return
            self.watch.frame()
            told = getattr(self.source, "last_capture_ns", None)  # the camera's own capture time, where known
            captured_ns = told if isinstance(told, int) and 0 < told <= read_ns else read_ns
            self._on_frame(item[0], item[1], captured_ns)

    def _on_frame(self, image: np.ndarray, truth: Any, captured_ns: int) -> None:
        if self._paused.is_set() or self._stop.is_set():
            self._ledger.count_frame(dropped=False)
            return
        recipe = self._active()  # the part is captured under the recipe active now, and decided with it
        if self.triggered:
            part = self._pending.match(captured_ns, self._ledger)
            if part is None:
                self._ledger.count_frame(dropped=False)
                return
        else:
            part = self._ledger.open_part(None, captured_ns, self._gate_ns(recipe))  # its id is its seq
            self._watch(part)
        part.recipe = recipe
        part.frame = Frame(image, part.part_id, self.camera_id, captured_ns, part.deadline_ns, truth)
        self._enqueue(part)

    def _enqueue(self, part: Part) -> None:
        dropped = self._buffer.put(part)
        if dropped is not None:
            self._ledger.count_frame(dropped=True)
            self._fail(dropped, "uninspected", why="inference cannot keep up (buffer full)")
