"""The writer thread: a bounded queue of pending verdicts (and a budget of frames waiting for JPEG encoding),
batched into one transaction each, images written first; retention on a timer and the quota after every batch.
Nothing is dropped silently: what does not fit is counted.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import sqlite3
import threading
import time
from typing import Any

import numpy as np

from inspector.store.counters import Counters
from inspector.store.images import ImageArchive
from inspector.store.records import Pending, detection_rows, verdict_row
from inspector.verdict import VerdictRecord

__all__ = ["Writer"]

log = logging.getLogger(__name__)

_STOP = object()
_MAX_BATCH = 256


class Writer:
    """Owns `conn` (closed when the thread ends) and starts its thread at once.

    Args:
        conn: the writer's own connection.
        archive: where the images go, and the quota and retention to keep.
        counters: shared with the archive and read by `stats()`.
        queue_size: verdicts waiting before new ones are dropped (and counted).
        max_pending_images: frames waiting for JPEG encoding; beyond it a verdict is stored without its image.
        maintenance_interval_s: how often retention runs.
    """

    def __init__(
        self,
        conn: sqlite3.Connection,
        archive: ImageArchive,
        counters: Counters,
        *,
        queue_size: int,
        max_pending_images: int,
        maintenance_interval_s: float,
    ) -> None:
        self._conn = conn
        self._archive = archive
        self._counters = counters
        self._max_pending_images = max_pending_images
        self._maintenance_interval_s = maintenance_interval_s
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=queue_size)
        self._idle = threading.Condition(counters.lock)  # pending counts live under the counters' lock
        self.pending_rows = 0
        self._pending_images = 0
        self.closed = False
        self._thread = threading.Thread(target=self._run, name="store-writer", daemon=True)
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def count_dropped(self) -> None:
        """A verdict lost without being queued (e.g. one after close()): say so in the counters."""
        with self._counters.lock:
            self._counters.rows_dropped += 1

    def submit(self, record: VerdictRecord, image: np.ndarray | None) -> None:
        """Queue one verdict record, with `image` when the frame budget allows. Never blocks."""
        pending = Pending(record)
        counters = self._counters
        with counters.lock:
            if image is not None:
                if self._pending_images < self._max_pending_images:
                    # A copy, so that a source reusing its frame buffer cannot change the image under the encoder.
                    pending.frame = np.ascontiguousarray(image).copy()
                    self._pending_images += 1
                else:
                    counters.images_skipped += 1
            try:
                self._queue.put_nowait(pending)
                self.pending_rows += 1
            except queue.Full:
                counters.rows_dropped += 1
                if pending.frame is not None:
                    self._pending_images -= 1
                if counters.rows_dropped in {1, 10, 100} or counters.rows_dropped % 1000 == 0:
                    log.warning("store queue full: %d verdicts not stored so far", counters.rows_dropped)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything submitted is written; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self.pending_rows > 0:
                left = deadline - time.monotonic()
                if left <= 0 or not self._thread.is_alive():
                    return False
                self._idle.wait(left)
        return True

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued and stop the thread (which closes its connection)."""
        self.closed = True
        self.flush(timeout)
        with contextlib.suppress(queue.Full):
            self._queue.put(_STOP, timeout=timeout)
        self._thread.join(timeout)

    def _run(self) -> None:
        conn = self._conn
        next_maintenance = time.monotonic() + self._maintenance_interval_s
        try:
            while True:
                try:
                    item = self._queue.get(timeout=1.0)
                except queue.Empty:
                    item = None
                if item is _STOP:
                    break
                batch: list[Pending] = [] if item is None else [item]
                while batch and len(batch) < _MAX_BATCH:  # one transaction for what has piled up: cheap at high rates
                    try:
                        more = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if more is _STOP:
                        self._queue.put(_STOP)
                        break
                    batch.append(more)
                if batch:
                    self._write_batch(conn, batch)
                if time.monotonic() >= next_maintenance:
                    next_maintenance = time.monotonic() + self._maintenance_interval_s
                    self._archive.apply_retention(conn)
        finally:
            conn.close()

    def _write_batch(self, conn: sqlite3.Connection, batch: list[Pending]) -> None:
        with_image = sum(1 for p in batch if p.frame is not None)  # counted now: writing lets the frames go
        written = 0
        try:
            written = self.insert(conn, batch)
            if self._archive.over_quota():
                self._archive.enforce_quota(conn)  # before the batch counts as done, so a flush() sees the quota kept
        except Exception:  # the writer thread must outlive any one bad batch
            log.exception("store: writing %d verdicts failed", len(batch))
        finally:
            with self._idle:
                self._counters.write_errors += len(batch) - written
                self.pending_rows -= len(batch)
                self._pending_images -= with_image
                self._idle.notify_all()

    def insert(self, conn: sqlite3.Connection, batch: list[Pending]) -> int:
        """Write the images, then the rows in one transaction; returns the rows written."""
        images: list[tuple[str | None, int]] = [self._archive.write(p) for p in batch]
        try:
            conn.execute("BEGIN")
            for p, (image, size) in zip(batch, images, strict=True):
                cur = conn.execute(
                    "INSERT INTO verdicts (part_id, seq, run, camera_id, ts, decision, reasons, thresholds_version, "
                    "recipe, model_sha256, latency_ms, n_detections, n_kept, image, image_bytes) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    verdict_row(p.record, image, size),
                )
                if p.record.detections:
                    conn.executemany(
                        "INSERT INTO detections VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        detection_rows(cur.lastrowid, p.record),
                    )
            conn.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            for rel, _ in images:  # no row points at them: do not leave them to eat the quota
                if rel:
                    self._archive.unlink(rel)
            raise
        with self._counters.lock:
            self._counters.rows_written += len(batch)
            self._counters.image_bytes += sum(size for _, size in images)
        return len(batch)
