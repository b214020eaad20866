"""`Store`, the pipeline sink that puts the package together: one connection for the writer thread, one for the
API's reads, the image archive beside the database, and the counters they share.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from inspector.config import StoreConfig
from inspector.store.counters import Counters
from inspector.store.ids import DEFAULT_BLOCK, StoredIds
from inspector.store.images import ImageArchive
from inspector.store.queries import Queries
from inspector.store.records import StoredVerdict
from inspector.store.schema import SCHEMA, connect, migrate
from inspector.store.writer import Writer
from inspector.types import Verdict

__all__ = ["Store"]


class Store(Queries):
    """SQLite store and image archive; a pipeline sink (`name = "store"`). The reads are `Queries`'.

    Args:
        config: paths, quota, retention and the pass sampling rate.
        names: class id -> name, to name stored detections; from the first verdict on, those of the latest
            verdict's recipe (a verdict carries its recipe's names).
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
        self.path = Path(config.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._counters = Counters()
        self._archive = ImageArchive(config, self._counters, jpeg_quality=jpeg_quality)
        self.images_dir = self._archive.images_dir

        # One connection for the writer thread, one (behind a lock) for API reads and the rare synchronous write.
        write_conn = connect(self.path)
        with write_conn:
            write_conn.executescript(SCHEMA)
        migrate(write_conn)  # a store made by an older version: brought to today's shape before anything reads it
        super().__init__(connect(self.path), names)
        self._counters.image_bytes = int(
            write_conn.execute("SELECT COALESCE(SUM(image_bytes), 0) FROM verdicts").fetchone()[0]
        )
        self._writer = Writer(
            write_conn,
            self._archive,
            self._counters,
            queue_size=queue_size,
            max_pending_images=max_pending_images,
            maintenance_interval_s=maintenance_interval_s,
        )

    # ----------------------------------------------------------------------------------------------- the sink
    def handle(self, verdict: Verdict) -> None:
        """Queue one verdict (and its image, for rejects and sampled passes). Never blocks."""
        if self._writer.closed:
            self._writer.count_dropped()  # a verdict after close() is lost: say so in the counters
            return
        if verdict.names and verdict.names is not self.names:
            self.names = verdict.names  # what it shows is named as the latest verdicts' recipe names its classes
        image = verdict.image if verdict.image is not None and self._archive.wants_image(verdict.rejected) else None
        self._writer.submit(verdict.to_record(), image)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything handed to `handle()` is written; False on timeout."""
        return self._writer.flush(timeout)

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued, stop the writer and close the database. Idempotent."""
        if self._writer.closed:
            return
        self._writer.close(timeout)
        with self._api_lock:
            self._api_conn.close()

    def part_ids(self, line: str, camera: str, *, block: int = DEFAULT_BLOCK) -> StoredIds:
        """The part numbers of `camera` on `line`, a new run of them, from this store's database (the caller
        closes them after the line stopped)."""
        return StoredIds(self.path, line, camera, block=block)

    # ------------------------------------------------------------------------------------- archive, health
    def apply_retention(self, now: float | None = None, conn: sqlite3.Connection | None = None) -> int:
        """Delete verdicts, detections and images older than `retention_days`; returns the verdicts removed."""
        if conn is None:
            with self._api_lock:
                return self._archive.apply_retention(self._api_conn, now)
        return self._archive.apply_retention(conn, now)

    def image_file(self, verdict: StoredVerdict) -> Path | None:
        """The JPEG of a stored verdict, if it was kept and is still on disk."""
        return self._archive.file(verdict.image)

    def stats(self) -> dict[str, Any]:
        """Writer counters: rows written / dropped, images written / skipped / pruned, bytes, queue depth."""
        with self._counters.lock:
            return {
                **self._counters.snapshot(),
                "quota_bytes": self._archive.quota_bytes,
                "queue": self._writer.pending_rows,
                "writer_alive": self._writer.alive,
            }
