"""The line's record: every verdict and its detections in SQLite (WAL), threshold versions, the audit log, and
JPEG images of rejects (and a sampled share of passes) in day folders beside it, under a quota and a retention.

It is a pipeline sink. `handle()` runs on the dispatch thread, so it only copies what it needs into a bounded
queue; one writer thread batches rows into transactions and encodes JPEGs. WAL with `synchronous=NORMAL` keeps
every committed transaction through a crash of the process (`kill -9`); only a power cut can lose the last few.
Nothing is dropped silently: rows or images that do not fit the queues are counted in `stats()` and logged.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import queue
import shutil
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from inspector.config import StoreConfig
from inspector.types import Decision, Detections, Thresholds, Verdict

__all__ = ["AuditRecord", "Store", "StoredDetection", "StoredVerdict", "ThresholdRecord"]

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS verdicts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    part_id INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    camera_id TEXT NOT NULL,
    ts REAL NOT NULL,
    decision TEXT NOT NULL,
    reasons TEXT NOT NULL,
    thresholds_version INTEGER NOT NULL,
    recipe TEXT NOT NULL,
    model_sha256 TEXT NOT NULL,
    latency_ms REAL,
    n_detections INTEGER NOT NULL,
    n_kept INTEGER NOT NULL,
    image TEXT,
    image_bytes INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS verdicts_part ON verdicts (part_id);
CREATE INDEX IF NOT EXISTS verdicts_decision ON verdicts (decision, id);
CREATE INDEX IF NOT EXISTS verdicts_ts ON verdicts (ts);
CREATE INDEX IF NOT EXISTS verdicts_image ON verdicts (id) WHERE image IS NOT NULL;
CREATE TABLE IF NOT EXISTS detections (
    verdict_id INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    class_id INTEGER NOT NULL,
    confidence REAL NOT NULL,
    x1 REAL NOT NULL, y1 REAL NOT NULL, x2 REAL NOT NULL, y2 REAL NOT NULL,
    kept INTEGER NOT NULL,
    PRIMARY KEY (verdict_id, idx)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS thresholds (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    version INTEGER NOT NULL,
    ts REAL NOT NULL,
    user TEXT NOT NULL,
    comment TEXT NOT NULL,
    json TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts REAL NOT NULL,
    user TEXT NOT NULL,
    action TEXT NOT NULL,
    old_version INTEGER,
    new_version INTEGER,
    old TEXT,
    new TEXT,
    comment TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

_VERDICT_COLUMNS = (
    "id, part_id, seq, camera_id, ts, decision, reasons, thresholds_version, recipe, model_sha256, latency_ms, "
    "n_detections, n_kept, image"
)
_STOP = object()
_MAX_INT64 = 2**63 - 1


@dataclass(slots=True)
class StoredDetection:
    """One stored detection; `kept` marks the ones that counted as defects under the thresholds of the time."""

    class_id: int
    class_name: str
    confidence: float
    xyxy: tuple[float, float, float, float]
    kept: bool


@dataclass(slots=True)
class StoredVerdict:
    """One stored verdict. `ts` is wall-clock seconds (epoch) of the capture; `image` is relative to images_dir."""

    id: int
    part_id: int
    seq: int
    camera_id: str
    ts: float
    decision: str
    reasons: list[str]
    thresholds_version: int
    recipe: str
    model_sha256: str
    latency_ms: float | None
    n_detections: int
    n_kept: int
    image: str | None
    detections: list[StoredDetection] | None = None

    @property
    def failsafe(self) -> bool:
        """Decided without inspection (deadline missed or error): its detections say nothing about the part."""
        return "uninspected" in self.reasons or "error" in self.reasons

    def to_detections(self) -> Detections:
        """The stored detections as a `Detections` (empty when not loaded)."""
        dets = self.detections or []
        if not dets:
            return Detections.empty()
        return Detections(
            np.array([d.xyxy for d in dets], np.float32),
            np.array([d.confidence for d in dets], np.float32),
            np.array([d.class_id for d in dets], np.int64),
        )


@dataclass(slots=True)
class AuditRecord:
    """One change: who, when (epoch seconds), what (`action`), the versions and full JSON before and after."""

    id: int
    ts: float
    user: str
    action: str
    old_version: int | None
    new_version: int | None
    old: dict[str, Any] | None
    new: dict[str, Any] | None
    comment: str


@dataclass(slots=True)
class ThresholdRecord:
    """A thresholds version as it was installed."""

    id: int
    version: int
    ts: float
    user: str
    comment: str
    thresholds: dict[str, Any]


@dataclass(slots=True)
class _Pending:
    """What `handle()` copies out of a verdict for the writer thread."""

    part_id: int
    seq: int
    camera_id: str
    ts: float
    decision: str
    reasons: list[str]
    thresholds_version: int
    recipe: str
    model_sha256: str
    latency_ms: float | None
    xyxy: np.ndarray
    confidence: np.ndarray
    class_id: np.ndarray
    kept: np.ndarray
    image: np.ndarray | None = None


@dataclass
class _Counters:
    rows_written: int = 0
    rows_dropped: int = 0
    write_errors: int = 0
    images_written: int = 0
    images_skipped: int = 0
    images_failed: int = 0
    images_pruned: int = 0
    rows_pruned: int = 0
    image_bytes: int = 0
    extra: dict[str, int] = field(default_factory=dict)


class Store:
    """SQLite store and image archive; a pipeline sink (`name = "store"`).

    Args:
        config: paths, quota, retention and the pass sampling rate.
        names: class id -> name, to name stored detections.
        queue_size: verdicts waiting for the writer before new ones are dropped (and counted).
        max_pending_images: frames waiting for JPEG encoding; beyond it a verdict is stored without its image.
        jpeg_quality: 0..100.
        maintenance_interval_s: how often retention runs (the quota is checked after every batch).
    """

    name = "store"

    def __init__(
        self,
        config: StoreConfig,
        names: dict[int, str],
        *,
        queue_size: int = 10_000,
        max_pending_images: int = 32,
        jpeg_quality: int = 85,
        maintenance_interval_s: float = 60.0,
    ) -> None:
        self.config = config
        self.names = dict(names)
        self.path = Path(config.path)
        self.images_dir = Path(config.images_dir)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.images_dir.mkdir(parents=True, exist_ok=True)
        self._quota_bytes = int(config.quota_mb * 1024 * 1024)
        self._retention_s = config.retention_days * 86400.0
        self._jpeg_quality = int(jpeg_quality)
        self._max_pending_images = max_pending_images
        self._maintenance_interval_s = maintenance_interval_s

        self._queue: queue.Queue[Any] = queue.Queue(maxsize=queue_size)
        self._lock = threading.Lock()  # counters, pending counts
        self._idle = threading.Condition(self._lock)
        self._pending_rows = 0
        self._pending_images = 0
        self._pass_credit = 0.0
        self._counters = _Counters()
        self._closed = False

        # One connection for the writer thread, one (behind a lock) for API reads and the rare synchronous write.
        self._write_conn = self._connect()
        with self._write_conn:
            self._write_conn.executescript(_SCHEMA)
        self._api_conn = self._connect()
        self._api_lock = threading.Lock()
        self._counters.image_bytes = int(
            self._write_conn.execute("SELECT COALESCE(SUM(image_bytes), 0) FROM verdicts").fetchone()[0]
        )
        self._writer = threading.Thread(target=self._run, name="store-writer", daemon=True)
        self._writer.start()

    # ----------------------------------------------------------------------------------------------- the sink
    def handle(self, verdict: Verdict) -> None:
        """Queue one verdict (and its image, for rejects and sampled passes). Never blocks."""
        if self._closed:
            with self._lock:
                self._counters.rows_dropped += 1  # a verdict after close() is lost: say so in the counters
            return
        n = len(verdict.detections)
        kept = np.asarray(verdict.kept, bool)
        if kept.shape != (n,):
            kept = np.zeros(n, bool)
        latency = verdict.timings.latency_ms()
        pending = _Pending(
            part_id=int(verdict.part_id),
            seq=int(verdict.seq),
            camera_id=str(verdict.camera_id),
            ts=_wall_clock(verdict.timings.captured_ns),
            decision=str(Decision(verdict.decision).value),
            reasons=[str(r) for r in verdict.reasons],
            thresholds_version=int(verdict.thresholds_version),
            recipe=str(verdict.recipe),
            model_sha256=str(verdict.model_sha256),
            latency_ms=latency if latency > 0 else None,
            xyxy=verdict.detections.xyxy,
            confidence=verdict.detections.confidence,
            class_id=verdict.detections.class_id,
            kept=kept,
        )
        with self._lock:
            if verdict.image is not None and self._wants_image(verdict.rejected):
                if self._pending_images < self._max_pending_images:
                    # A copy, so that a source reusing its frame buffer cannot change the image under the encoder.
                    pending.image = np.ascontiguousarray(verdict.image).copy()
                    self._pending_images += 1
                else:
                    self._counters.images_skipped += 1
            try:
                self._queue.put_nowait(pending)
                self._pending_rows += 1
            except queue.Full:
                self._counters.rows_dropped += 1
                if pending.image is not None:
                    self._pending_images -= 1
                if self._counters.rows_dropped in {1, 10, 100} or self._counters.rows_dropped % 1000 == 0:
                    log.warning("store queue full: %d verdicts not stored so far", self._counters.rows_dropped)

    def _wants_image(self, rejected: bool) -> bool:
        """Rejects always; passes at `pass_sample_rate`, spread evenly (a credit counter, not a coin)."""
        if rejected:
            return True
        self._pass_credit += self.config.pass_sample_rate
        if self._pass_credit >= 1.0:
            self._pass_credit -= 1.0
            return True
        return False

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything handed to `handle()` is written; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._pending_rows > 0:
                left = deadline - time.monotonic()
                if left <= 0 or not self._writer.is_alive():
                    return False
                self._idle.wait(left)
        return True

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued, stop the writer and close the database. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self.flush(timeout)
        with contextlib.suppress(queue.Full):
            self._queue.put(_STOP, timeout=timeout)
        self._writer.join(timeout)
        with self._api_lock:
            self._api_conn.close()

    # ------------------------------------------------------------------------------------------ writer thread
    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=10.0, check_same_thread=False, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")  # durable through a process crash; fsync at checkpoints only
        conn.execute("PRAGMA busy_timeout=10000")
        return conn

    def _run(self) -> None:
        conn = self._write_conn
        next_maintenance = time.monotonic() + self._maintenance_interval_s
        try:
            while True:
                try:
                    item = self._queue.get(timeout=1.0)
                except queue.Empty:
                    item = None
                if item is _STOP:
                    break
                batch: list[_Pending] = [] if item is None else [item]
                while batch and len(batch) < 256:  # one transaction for what has piled up: cheap at high rates
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
                    self.apply_retention(conn=conn)
        finally:
            conn.close()

    def _write_batch(self, conn: sqlite3.Connection, batch: list[_Pending]) -> None:
        with_image = sum(1 for p in batch if p.image is not None)  # counted now: writing lets the frames go
        written = 0
        try:
            written = self._insert(conn, batch)
            if self._counters.image_bytes > self._quota_bytes:
                self._enforce_quota(conn)  # before the batch counts as done, so a flush() sees the quota kept
        except Exception:  # the writer thread must outlive any one bad batch
            log.exception("store: writing %d verdicts failed", len(batch))
        finally:
            with self._idle:
                self._counters.write_errors += len(batch) - written
                self._pending_rows -= len(batch)
                self._pending_images -= with_image
                self._idle.notify_all()

    def _insert(self, conn: sqlite3.Connection, batch: list[_Pending]) -> int:
        """Write the images, then the rows in one transaction; returns the rows written."""
        images: list[tuple[str | None, int]] = [self._write_image(p) for p in batch]
        try:
            conn.execute("BEGIN")
            for p, (image, size) in zip(batch, images, strict=True):
                cur = conn.execute(
                    "INSERT INTO verdicts (part_id, seq, camera_id, ts, decision, reasons, thresholds_version, "
                    "recipe, model_sha256, latency_ms, n_detections, n_kept, image, image_bytes) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        _clamp_int(p.part_id),
                        _clamp_int(p.seq),
                        p.camera_id,
                        p.ts,
                        p.decision,
                        json.dumps(p.reasons),
                        _clamp_int(p.thresholds_version),
                        p.recipe,
                        p.model_sha256,
                        p.latency_ms,
                        len(p.confidence),
                        int(p.kept.sum()),
                        image,
                        size,
                    ),
                )
                vid = cur.lastrowid
                if len(p.confidence):
                    conn.executemany(
                        "INSERT INTO detections VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        [
                            (vid, i, int(c), float(s), *(float(v) for v in box), int(k))
                            for i, (box, s, c, k) in enumerate(
                                zip(p.xyxy, p.confidence, p.class_id, p.kept, strict=True)
                            )
                        ],
                    )
            conn.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            for rel, _ in images:  # no row points at them: do not leave them to eat the quota
                if rel:
                    self._unlink(rel)
            raise
        with self._lock:
            self._counters.rows_written += len(batch)
            self._counters.image_bytes += sum(size for _, size in images)
        return len(batch)

    def _write_image(self, p: _Pending) -> tuple[str | None, int]:
        """Encode and write one JPEG (write-then-rename, so a crash leaves no half file); (relative path, bytes)."""
        if p.image is None:
            return None, 0
        day = dt.datetime.fromtimestamp(p.ts).strftime("%Y-%m-%d")
        stamp = f"{int(p.ts * 1000)}"
        rel = f"{day}/{stamp}_{p.camera_id}_{p.part_id}_{p.seq}_{p.decision}.jpg"
        target = self.images_dir / rel
        try:
            ok, buf = cv2.imencode(".jpg", p.image, [cv2.IMWRITE_JPEG_QUALITY, self._jpeg_quality])
            if not ok:
                raise ValueError("cv2.imencode failed")
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_suffix(".tmp")
            tmp.write_bytes(buf.tobytes())
            os.replace(tmp, target)
        except (OSError, ValueError, cv2.error) as exc:
            log.warning("store: image for part %d not written: %s", p.part_id, exc)
            with self._lock:
                self._counters.images_failed += 1
            return None, 0
        finally:
            p.image = None  # let the frame go as soon as it is encoded
        with self._lock:
            self._counters.images_written += 1
        return rel, int(buf.size)

    def _enforce_quota(self, conn: sqlite3.Connection) -> None:
        """Delete the oldest images until the archive is at 90 % of its quota (room for a while)."""
        target = int(self._quota_bytes * 0.9)
        while self._counters.image_bytes > target:
            rows = conn.execute(
                "SELECT id, image, image_bytes FROM verdicts WHERE image IS NOT NULL ORDER BY id LIMIT 200"
            ).fetchall()
            if not rows:
                with self._lock:
                    self._counters.image_bytes = 0
                return
            freed, removed = 0, []
            for vid, rel, size in rows:
                self._unlink(rel)
                freed += size
                removed.append(vid)
                if self._counters.image_bytes - freed <= target:
                    break
            conn.executemany("UPDATE verdicts SET image = NULL, image_bytes = 0 WHERE id = ?", [(v,) for v in removed])
            with self._lock:
                self._counters.image_bytes -= freed
                self._counters.images_pruned += len(removed)

    def apply_retention(self, now: float | None = None, conn: sqlite3.Connection | None = None) -> int:
        """Delete verdicts, detections and images older than `retention_days`; returns the verdicts removed."""
        if conn is None:
            with self._api_lock:
                return self.apply_retention(now, self._api_conn)
        cutoff = (time.time() if now is None else now) - self._retention_s
        row = conn.execute("SELECT MAX(id) FROM verdicts WHERE ts < ?", (cutoff,)).fetchone()
        last = row[0] if row else None
        removed = 0
        if last is not None:
            images = conn.execute(
                "SELECT image, image_bytes FROM verdicts WHERE id <= ? AND image IS NOT NULL", (last,)
            ).fetchall()
            for rel, _ in images:
                self._unlink(rel)
            conn.execute("BEGIN")
            conn.execute("DELETE FROM detections WHERE verdict_id <= ?", (last,))
            removed = conn.execute("DELETE FROM verdicts WHERE id <= ?", (last,)).rowcount
            conn.execute("COMMIT")
            with self._lock:
                self._counters.image_bytes -= sum(size for _, size in images)
                self._counters.images_pruned += len(images)
                self._counters.rows_pruned += removed
        # Day folders older than the retention (also catches files orphaned by a crash before their commit).
        cutoff_day = dt.datetime.fromtimestamp(cutoff).strftime("%Y-%m-%d")
        for folder in self.images_dir.iterdir():
            if folder.is_dir() and _is_day(folder.name) and folder.name < cutoff_day:
                shutil.rmtree(folder, ignore_errors=True)
        return removed

    def _unlink(self, rel: str) -> None:
        with contextlib.suppress(OSError):
            (self.images_dir / rel).unlink()

    # ------------------------------------------------------------------------------------------------ queries
    def _query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._api_lock:
            return self._api_conn.execute(sql, params).fetchall()

    def recent_verdicts(
        self,
        *,
        decision: str | None = None,
        reason: str | None = None,
        limit: int = 50,
        before: int | None = None,
        after: int | None = None,
    ) -> list[StoredVerdict]:
        """Newest first, optionally only one decision / with one reason; `before` / `after` are verdict ids
        (exclusive bounds): `before` pages back through history, `after` asks for what is new since."""
        where, params = ["id < ?"], [_clamp_int(before) if before is not None else _MAX_INT64]
        if after is not None:
            where.append("id > ?")
            params.append(_clamp_int(after))
        if decision is not None:
            where.append("decision = ?")
            params.append(decision)
        if reason is not None:
            where.append("EXISTS (SELECT 1 FROM json_each(verdicts.reasons) WHERE value = ?)")
            params.append(reason)
        rows = self._query(
            f"SELECT {_VERDICT_COLUMNS} FROM verdicts WHERE {' AND '.join(where)} ORDER BY id DESC LIMIT ?",
            (*params, max(0, int(limit))),
        )
        return [self._verdict(r) for r in rows]

    def last_id(self) -> int:
        """The id of the newest verdict (0 when empty)."""
        return int(self._query("SELECT COALESCE(MAX(id), 0) FROM verdicts")[0][0])

    def get_verdict(self, part_id: int) -> StoredVerdict | None:
        """The newest verdict for `part_id`, with its detections (part ids restart with the line)."""
        rows = self._query(
            f"SELECT {_VERDICT_COLUMNS} FROM verdicts WHERE part_id = ? ORDER BY id DESC LIMIT 1",
            (_clamp_int(part_id),),
        )
        return self._with_detections([self._verdict(r) for r in rows])[0] if rows else None

    def get_verdict_by_id(self, verdict_id: int) -> StoredVerdict | None:
        """One verdict by its store id, with its detections."""
        rows = self._query(f"SELECT {_VERDICT_COLUMNS} FROM verdicts WHERE id = ?", (_clamp_int(verdict_id),))
        return self._with_detections([self._verdict(r) for r in rows])[0] if rows else None

    def recent_parts(self, n: int) -> list[StoredVerdict]:
        """The last `n` verdicts with their detections, newest first (for re-deciding under other thresholds)."""
        return self._with_detections(self.recent_verdicts(limit=n))

    def image_file(self, verdict: StoredVerdict) -> Path | None:
        """The JPEG of a stored verdict, if it was kept and is still on disk."""
        if not verdict.image:
            return None
        path = self.images_dir / verdict.image
        return path if path.is_file() else None

    def counts(self) -> dict[str, int]:
        """Stored verdicts by decision."""
        rows = self._query("SELECT decision, COUNT(*) FROM verdicts GROUP BY decision")
        out = {d.value: 0 for d in Decision}
        out.update({str(d): int(c) for d, c in rows})
        return out

    def _verdict(self, row: tuple[Any, ...]) -> StoredVerdict:
        return StoredVerdict(
            id=row[0],
            part_id=row[1],
            seq=row[2],
            camera_id=row[3],
            ts=row[4],
            decision=row[5],
            reasons=json.loads(row[6]),
            thresholds_version=row[7],
            recipe=row[8],
            model_sha256=row[9],
            latency_ms=row[10],
            n_detections=row[11],
            n_kept=row[12],
            image=row[13],
        )

    def _with_detections(self, verdicts: list[StoredVerdict]) -> list[StoredVerdict]:
        if not verdicts:
            return verdicts
        by_id = {v.id: v for v in verdicts}
        for v in verdicts:
            v.detections = []
        marks = ",".join("?" * len(by_id))
        rows = self._query(
            f"SELECT verdict_id, class_id, confidence, x1, y1, x2, y2, kept FROM detections "
            f"WHERE verdict_id IN ({marks}) ORDER BY verdict_id, idx",
            tuple(by_id),
        )
        for vid, cid, conf, x1, y1, x2, y2, kept in rows:
            det = StoredDetection(cid, self.names.get(cid, str(cid)), conf, (x1, y1, x2, y2), bool(kept))
            by_id[vid].detections.append(det)  # type: ignore[union-attr]
        return verdicts

    # ------------------------------------------------------------------------------- thresholds and audit
    def record_thresholds(
        self,
        new: Thresholds,
        *,
        user: str,
        comment: str = "",
        old: Thresholds | None = None,
        action: str = "thresholds.update",
    ) -> int:
        """Store `new` as an installed version and audit the change from `old`, in one transaction; audit id."""
        now = time.time()
        new_json = new.model_dump_json()
        with self._api_lock:
            conn = self._api_conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute(
                    "INSERT INTO thresholds (version, ts, user, comment, json) VALUES (?, ?, ?, ?, ?)",
                    (new.version, now, user, comment, new_json),
                )
                cur = conn.execute(
                    "INSERT INTO audit (ts, user, action, old_version, new_version, old, new, comment) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        now,
                        user,
                        action,
                        old.version if old else None,
                        new.version,
                        old.model_dump_json() if old else None,
                        new_json,
                        comment,
                    ),
                )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        return int(cur.lastrowid or 0)

    def audit_event(self, *, user: str, action: str, comment: str = "") -> int:
        """Audit something that is not a thresholds change (e.g. the first-start account being created)."""
        with self._api_lock:
            cur = self._api_conn.execute(
                "INSERT INTO audit (ts, user, action, comment) VALUES (?, ?, ?, ?)",
                (time.time(), user, action, comment),
            )
        return int(cur.lastrowid or 0)

    def audit(self, *, limit: int = 50, before: int | None = None) -> list[AuditRecord]:
        """Audit rows, newest first; `before` is an audit id (exclusive)."""
        rows = self._query(
            "SELECT id, ts, user, action, old_version, new_version, old, new, comment FROM audit "
            "WHERE id < ? ORDER BY id DESC LIMIT ?",
            (_clamp_int(before) if before is not None else _MAX_INT64, max(0, int(limit))),
        )
        return [AuditRecord(r[0], r[1], r[2], r[3], r[4], r[5], _loads(r[6]), _loads(r[7]), r[8]) for r in rows]

    def threshold_history(self, limit: int = 50) -> list[ThresholdRecord]:
        """Installed thresholds versions, newest first."""
        rows = self._query(
            "SELECT id, version, ts, user, comment, json FROM thresholds ORDER BY id DESC LIMIT ?",
            (max(0, int(limit)),),
        )
        return [ThresholdRecord(r[0], r[1], r[2], r[3], r[4], json.loads(r[5])) for r in rows]

    def latest_thresholds(self) -> Thresholds | None:
        """The thresholds installed last (to restore them after a restart), or None."""
        history = self.threshold_history(1)
        return Thresholds.model_validate(history[0].thresholds) if history else None

    # ------------------------------------------------------------------------------------- settings, health
    def get_setting(self, key: str) -> str | None:
        rows = self._query("SELECT value FROM settings WHERE key = ?", (key,))
        return rows[0][0] if rows else None

    def put_setting(self, key: str, value: str) -> None:
        with self._api_lock:
            self._api_conn.execute(
                "INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

    def integrity_check(self) -> str:
        """SQLite's `PRAGMA integrity_check`: "ok" when the database is sound."""
        return "; ".join(str(r[0]) for r in self._query("PRAGMA integrity_check"))

    def stats(self) -> dict[str, Any]:
        """Writer counters: rows written / dropped, images written / skipped / pruned, bytes, queue depth."""
        with self._lock:
            c = self._counters
            return {
                "rows_written": c.rows_written,
                "rows_dropped": c.rows_dropped,
                "write_errors": c.write_errors,
                "images_written": c.images_written,
                "images_skipped": c.images_skipped,
                "images_failed": c.images_failed,
                "images_pruned": c.images_pruned,
                "rows_pruned": c.rows_pruned,
                "image_bytes": c.image_bytes,
                "quota_bytes": self._quota_bytes,
                "queue": self._pending_rows,
                "writer_alive": self._writer.is_alive(),
            }


def _wall_clock(captured_ns: int) -> float:
    """Wall-clock time of a monotonic capture stamp; now when the stamp is missing or implausible."""
    now = time.time()
    if captured_ns <= 0:
        return now
    age = (time.monotonic_ns() - captured_ns) / 1e9
    return now - age if 0.0 <= age < 3600.0 else now


def _clamp_int(value: int) -> int:
    """SQLite integers are 64-bit: keep out-of-range ids from raising (they match nothing anyway)."""
    return max(-_MAX_INT64 - 1, min(_MAX_INT64, int(value)))


def _loads(text: str | None) -> dict[str, Any] | None:
    return json.loads(text) if text else None


def _is_day(name: str) -> bool:
    try:
        dt.datetime.strptime(name, "%Y-%m-%d")
    except ValueError:
        return False
    return True
