"""The archive of images beside the database: which frames are kept (every reject, passes at the sampling rate),
JPEGs written into day folders, and pruning under the quota (oldest first) and the retention (rows and images).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import shutil
import sqlite3
import time
from pathlib import Path

import cv2

from inspector.config import StoreConfig
from inspector.store.counters import Counters
from inspector.store.records import Pending

__all__ = ["ImageArchive"]

log = logging.getLogger(__name__)


class ImageArchive:
    """JPEGs under `config.images_dir`, `<day>/<ms>_<camera>_<part>_<seq>_<decision>.jpg`, counted in `counters`.

    Args:
        config: the folder, quota, retention and pass sampling rate (read on every frame).
        counters: shared with the writer; images written / failed / pruned and bytes kept.
        jpeg_quality: 0..100.
    """

    def __init__(self, config: StoreConfig, counters: Counters, *, jpeg_quality: int = 85) -> None:
        self.config = config
        self.images_dir = Path(config.images_dir)
        self.images_dir.mkdir(parents=True, exist_ok=True)
        self.quota_bytes = int(config.quota_mb * 1024 * 1024)
        self._retention_s = config.retention_days * 86400.0
        self._jpeg_quality = int(jpeg_quality)
        self._counters = counters
        self._pass_credit = 0.0

    def wants_image(self, rejected: bool) -> bool:
        """Rejects always; passes at `pass_sample_rate`, spread evenly (a credit counter, not a coin)."""
        if rejected:
            return True
        with self._counters.lock:
            self._pass_credit += self.config.pass_sample_rate
            if self._pass_credit >= 1.0:
                self._pass_credit -= 1.0
                return True
        return False

    def file(self, rel: str | None) -> Path | None:
        """The JPEG at `rel` (relative to images_dir), if there is one and it is still on disk."""
        if not rel:
            return None
        path = self.images_dir / rel
        return path if path.is_file() else None

    def write(self, p: Pending) -> tuple[str | None, int]:
        """Encode and write one JPEG (write-then-rename, so a crash leaves no half file); (relative path, bytes)."""
        if p.frame is None:
            return None, 0
        r = p.record
        day = dt.datetime.fromtimestamp(r.ts).strftime("%Y-%m-%d")
        stamp = f"{int(r.ts * 1000)}"
        rel = f"{day}/{stamp}_{r.camera_id}_{r.part_id}_{r.seq}_{r.decision.value}.jpg"
        target = self.images_dir / rel
        try:
            ok, buf = cv2.imencode(".jpg", p.frame, [cv2.IMWRITE_JPEG_QUALITY, self._jpeg_quality])
            if not ok:
                raise ValueError("cv2.imencode failed")
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_suffix(".tmp")
            tmp.write_bytes(buf.tobytes())
            os.replace(tmp, target)
        except (OSError, ValueError, cv2.error) as exc:
            log.warning("store: image for part %d not written: %s", r.part_id, exc)
            with self._counters.lock:
                self._counters.images_failed += 1
            return None, 0
        finally:
            p.frame = None  # let the frame go as soon as it is encoded
        with self._counters.lock:
            self._counters.images_written += 1
        return rel, int(buf.size)

    def unlink(self, rel: str) -> None:
        """Remove one image; one already gone is no error."""
        with contextlib.suppress(OSError):
            (self.images_dir / rel).unlink()

    def over_quota(self) -> bool:
        """More bytes kept than the quota allows."""
        return self._counters.image_bytes > self.quota_bytes

    def enforce_quota(self, conn: sqlite3.Connection) -> None:
        """Delete the oldest images until the archive is at 90 % of its quota (room for a while)."""
        counters = self._counters
        target = int(self.quota_bytes * 0.9)
        while counters.image_bytes > target:
            rows = conn.execute(
                "SELECT id, image, image_bytes FROM verdicts WHERE image IS NOT NULL ORDER BY id LIMIT 200"
            ).fetchall()
            if not rows:
                with counters.lock:
                    counters.image_bytes = 0
                return
            freed, removed = 0, []
            for vid, rel, size in rows:
                self.unlink(rel)
                freed += size
                removed.append(vid)
                if counters.image_bytes - freed <= target:
                    break
            conn.executemany("UPDATE verdicts SET image = NULL, image_bytes = 0 WHERE id = ?", [(v,) for v in removed])
            with counters.lock:
                counters.image_bytes -= freed
                counters.images_pruned += len(removed)

    def apply_retention(self, conn: sqlite3.Connection, now: float | None = None) -> int:
        """Delete verdicts, detections and images older than `retention_days`; returns the verdicts removed."""
        counters = self._counters
        cutoff = (time.time() if now is None else now) - self._retention_s
        row = conn.execute("SELECT MAX(id) FROM verdicts WHERE ts < ?", (cutoff,)).fetchone()
        last = row[0] if row else None
        removed = 0
        if last is not None:
            images = conn.execute(
                "SELECT image, image_bytes FROM verdicts WHERE id <= ? AND image IS NOT NULL", (last,)
            ).fetchall()
            for rel, _ in images:
                self.unlink(rel)
            conn.execute("BEGIN")
            conn.execute("DELETE FROM detections WHERE verdict_id <= ?", (last,))
            removed = conn.execute("DELETE FROM verdicts WHERE id <= ?", (last,)).rowcount
            conn.execute("COMMIT")
            with counters.lock:
                counters.image_bytes -= sum(size for _, size in images)
                counters.images_pruned += len(images)
                counters.rows_pruned += removed
        # Day folders older than the retention (also catches files orphaned by a crash before their commit).
        cutoff_day = dt.datetime.fromtimestamp(cutoff).strftime("%Y-%m-%d")
        for folder in self.images_dir.iterdir():
            if folder.is_dir() and _is_day(folder.name) and folder.name < cutoff_day:
                shutil.rmtree(folder, ignore_errors=True)
        return removed


def _is_day(name: str) -> bool:
    try:
        dt.datetime.strptime(name, "%Y-%m-%d")
    except ValueError:
        return False
    return True
