"""Newest frame only: a grabber thread drains a free-run camera at the camera's own rate; readers take the latest.

A live stream (RTSP, HTTP, USB, a video file played in real time) delivers frames whether or not anyone is ready
for them; read at the inspection rate instead, the stream's own buffers fill and every frame inspected is older
than the one before. `Grabber` wraps such a source: its thread reads every frame as it arrives and keeps only the
newest, so `read()` always returns the freshest frame (waiting for one newer than the last taken). Frames replaced
before anyone took them are counted (`frames_skipped`).

Capture time: each frame keeps the time the source says it was captured (`last_capture_ns`, a stream clock mapped
to `time.monotonic_ns()`; see `StreamClock`), else the time the grabber thread read it, never the time a reader
took it, so latency and gate deadlines count from the camera, not from the pipeline.

Stalls: a stream that stops delivering is declared lost when no new frame has come for `stall_timeout_s`, even
while the source's own read is still blocked (a dead RTSP server can hold a read for many seconds): `read()` raises
`SourceError` and the caller reopens. Each `open()` builds a fresh source with `make_source`, so a thread still
stuck in the old source's read never shares a handle with the new one (it closes its own source when it returns).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from inspector.types import FrameSource, SourceError

__all__ = ["Grabber", "StreamClock"]

log = logging.getLogger(__name__)

_JOIN_S = 0.5  # how long close() waits for the grab thread; a thread stuck in a read is left to finish alone
_SETTLE_S = 3.0  # longest wait for a stream to hand over its backlog (`StreamClock.settled`) before frames go out


class StreamClock:
    """Maps a stream's own timestamps (ms since the stream started: OpenCV's `CAP_PROP_POS_MSEC`) to
    `time.monotonic_ns()`.

    The offset between the two clocks is the smallest `arrival - stream time` seen so far: the frame that arrived
    quickest defines the transport delay floor, and a frame that waited in a buffer is dated back by what it
    waited. Without a sender clock (RTCP) the floor itself is not known, so the estimate is never earlier than
    the true capture time, only closer to it than the arrival time. A stream time that goes backwards (a new
    stream, a looped file) starts the mapping again.

    `settled`: False while a stream is still handing over what it buffered (right after connecting, an RTSP
    stream delivers a second or more of old frames at once): each such frame arrives sooner after the one before
    than their stream times are apart, and lowers the offset by about that much. Until three frames in a row do
    not, the mapping cannot date a frame (the quickest frame is not the live edge yet); a grabber hands out no
    frame before then (`Grabber`, at most `_SETTLE_S`). A stream time that does not advance dates nothing (a
    backend that reports none reads 0 each time).
    """

    SETTLE_FRAMES = 3

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.settled = False
        self._offset_ns: int | None = None
        self._last_ms = -1.0
        self._on_beat = 0  # frames in a row that arrived on the stream's beat
        self._repeats = 0  # frames in a row whose stream time did not advance

    def capture_ns(self, stream_ms: float | None, arrival_ns: int) -> int:
        """Capture time of a frame with stream time `stream_ms` that arrived at `arrival_ns` (monotonic)."""
        if stream_ms is None or stream_ms < 0 or stream_ms != stream_ms:  # unknown or NaN
            self.settled = True
            return arrival_ns
        if stream_ms == self._last_ms:
            self._repeats += 1
            self.settled = self.settled or self._repeats >= 2 * self.SETTLE_FRAMES  # no stream clock after all
            return arrival_ns
        self._repeats = 0
        gap_ns = int((stream_ms - self._last_ms) * 1e6)
        if stream_ms < self._last_ms:
            self._offset_ns = None
            self.settled, self._on_beat = False, 0
        self._last_ms = stream_ms
        offset = arrival_ns - int(stream_ms * 1e6)
        if self._offset_ns is not None and not self.settled and gap_ns > 0:
            on_beat = self._offset_ns - offset < gap_ns // 2  # arrived about when its stream time said
            self._on_beat = self._on_beat + 1 if on_beat else 0
            self.settled = self._on_beat >= self.SETTLE_FRAMES
        if self._offset_ns is None or offset < self._offset_ns:
            self._offset_ns = offset
        return min(arrival_ns, int(stream_ms * 1e6) + self._offset_ns)


@dataclass(slots=True)
class _Grabbed:
    image: np.ndarray
    truth: Any
    captured_ns: int
    number: int  # frames grabbed before this one, since open()


class _GrabThread:
    """One opened source and the thread that reads it; stops when told or when the source fails or ends."""

    def __init__(self, source: FrameSource, owner: Grabber) -> None:
        self.source = source
        self.owner = owner
        self.stop = threading.Event()
        self.opened_ns = time.monotonic_ns()
        self.thread = threading.Thread(target=self._run, name=f"grab-{owner.name}", daemon=True)

    def _run(self) -> None:
        try:
            while not self.stop.is_set():
                try:
                    item = self.source.read()
                except SourceError as exc:
                    self.owner._finish(self, exc)
                    return
                except Exception as exc:  # a backend bug is a lost camera too, never a dead thread
                    log.exception("grabbing from %s failed", self.owner.description)
                    self.owner._finish(self, SourceError(f"{self.owner.description}: {exc!r}"))
                    return
                arrival = time.monotonic_ns()
                if item is None:
                    self.owner._finish(self, None)
                    return
                told = getattr(self.source, "last_capture_ns", None)
                captured = told if isinstance(told, int) and 0 < told <= arrival else arrival
                if not getattr(self.source, "settled", True) and (arrival - self.opened_ns) / 1e9 < _SETTLE_S:
                    self.owner._skip(self)  # a frame of the backlog a stream hands over on connecting
                    continue
                self.owner._put(self, item[0], item[1], captured)
        finally:
            try:
                self.source.close()
            except Exception:
                log.exception("closing %s failed", self.owner.description)


class Grabber:
    """A free-run source read by a thread of its own, newest frame only (see the module docstring).

    make_source: builds a new, unopened source for each `open()`. stall_timeout_s: no new frame for this long
    means the camera is lost. name: for the thread's name.
    """

    live = True  # frames come on the camera's schedule: a surplus must fail safe, not wait

    def __init__(
        self, make_source: Callable[[], FrameSource], *, stall_timeout_s: float = 2.0, name: str = "camera"
    ) -> None:
        if stall_timeout_s <= 0:
            raise ValueError("stall_timeout_s must be > 0")
        self.make_source = make_source
        self.stall_timeout_s = stall_timeout_s
        self.name = name
        probe = make_source()
        self.description = getattr(probe, "description", type(probe).__name__)
        self.frames_grabbed = 0
        self.frames_skipped = 0
        self.last_capture_ns: int | None = None  # capture time of the frame `read()` returned last
        self._cv = threading.Condition()
        self._current: _GrabThread | None = None
        self._newest: _Grabbed | None = None
        self._taken = -1  # number of the frame read() returned last
        self._count = 0  # frames grabbed since open()
        self._last_arrival_ns = 0
        self._ended = False  # the grab thread has stopped: the stream ended, or failed with `_error`
        self._error: SourceError | None = None

    # -- the grab thread's side -----------------------------------------------------------------------------------
    def _put(self, grab: _GrabThread, image: np.ndarray, truth: Any, captured_ns: int) -> None:
        with self._cv:
            if grab is not self._current:
                return  # a thread left behind by close(): its frames are stale
            if self._newest is not None and self._newest.number > self._taken:
                self.frames_skipped += 1  # replaced before anyone took it
            self._newest = _Grabbed(image, truth, captured_ns, self._count)
            self._count += 1
            self.frames_grabbed += 1
            self._last_arrival_ns = time.monotonic_ns()
            self._cv.notify_all()

    def _skip(self, grab: _GrabThread) -> None:
        with self._cv:
            if grab is self._current:
                self.frames_grabbed += 1
                self.frames_skipped += 1
                self._last_arrival_ns = time.monotonic_ns()

    def _finish(self, grab: _GrabThread, error: SourceError | None) -> None:
        with self._cv:
            if grab is self._current:
                self._ended, self._error = True, error
                self._cv.notify_all()

    # -- FrameSource ------------------------------------------------------------------------------------------------
    def open(self) -> None:
        """Open a fresh source (raises its `SourceError`) and start grabbing from it."""
        self.close()
        source = self.make_source()
        self.description = getattr(source, "description", self.description)
        source.open()
        grab = _GrabThread(source, self)
        with self._cv:
            self._current = grab
            self._newest = None
            self._taken = -1
            self._count = 0
            self._ended, self._error = False, None
            self._last_arrival_ns = time.monotonic_ns()  # the stall clock starts at open
        grab.thread.start()

    def read(self) -> tuple[np.ndarray, Any] | None:
        """The newest frame not yet returned, waiting for it; None when a finite stream has ended (after its
        last frame). Raises `SourceError` when the source failed or no new frame came for `stall_timeout_s`."""
        with self._cv:
            if self._current is None:
                raise SourceError(f"{self.description} is not open")
            while True:
                newest = self._newest
                if newest is not None and newest.number > self._taken:
                    self._taken = newest.number
                    self.last_capture_ns = newest.captured_ns
                    return newest.image, newest.truth
                if self._error is not None:
                    raise self._error
                if self._ended:
                    return None
                silent_s = (time.monotonic_ns() - self._last_arrival_ns) / 1e9
                if silent_s >= self.stall_timeout_s:
                    raise SourceError(f"{self.description}: no frame for {silent_s:.1f} s (stalled)")
                self._cv.wait(self.stall_timeout_s - silent_s)

    def close(self) -> None:
        """Stop grabbing; the thread closes its source once its read returns (at once unless it is stuck)."""
        with self._cv:
            grab, self._current = self._current, None
            self._newest = None
            self._cv.notify_all()
        if grab is None:
            return
        grab.stop.set()
        if grab.thread is not threading.current_thread():
            grab.thread.join(_JOIN_S)
            if grab.thread.is_alive():
                log.warning("%s: a read is still blocked; its source closes when it returns", self.description)

    def stats(self) -> dict[str, int]:
        """Frames grabbed and frames skipped (replaced by a newer one before they were read), since creation."""
        with self._cv:
            return {"frames_grabbed": self.frames_grabbed, "frames_skipped": self.frames_skipped}
