"""`StoredIds`: part numbers from a high-water mark in the store's database, reserved a block at a time, so that a
restart (even a `kill -9` or a power cut) never hands out a number again (see `inspector.part_ids`).

Table `part_ids`: one row per (line, camera): `next_seq`, the first number not yet reserved, and `run`, the count of
starts. Its own connection with `synchronous=FULL`: a reservation is on disk before a number of it is used.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from pathlib import Path

from inspector.part_ids import PartIds
from inspector.store.schema import connect

__all__ = ["DEFAULT_BLOCK", "StoredIds"]

log = logging.getLogger(__name__)

DEFAULT_BLOCK = 1000  # numbers reserved per write: at 20 parts/s one write every 50 s; a kill -9 skips < 1000

_TABLE = """
CREATE TABLE IF NOT EXISTS part_ids (
    line TEXT NOT NULL,
    camera TEXT NOT NULL,
    next_seq INTEGER NOT NULL,
    run INTEGER NOT NULL,
    PRIMARY KEY (line, camera)
) WITHOUT ROWID
"""


class StoredIds(PartIds):
    """The numbers of camera `camera` of line `line`, from the store at `path`; a new `run` on every start.

    block: numbers reserved per write to disk.
    """

    def __init__(self, path: Path, line: str, camera: str, *, block: int = DEFAULT_BLOCK) -> None:
        if block < 2:
            raise ValueError("block must be >= 2")
        self.line, self.camera, self.block = line, camera, block
        self._conn = connect(Path(path))
        self._conn.execute("PRAGMA synchronous=FULL")  # this row must survive a power cut, not only a crash
        self._conn.execute(_TABLE)
        self._db_lock = threading.Lock()
        run, first, limit = self._start()
        super().__init__(first=first, run=run)
        self._limit = limit  # first number past the current block
        self._ahead: tuple[int, int] | None = None  # a block reserved in advance
        self._reserving = False
        self._written = threading.Condition(self._lock)  # a block in advance was written (or failed)
        self._closed = False
        log.info("part numbers of %s/%s: run %d from %d", line, camera, run, first)

    def next(self) -> int:
        with self._lock:
            while self._next >= self._limit:
                if self._ahead is not None:
                    self._next, self._limit = self._ahead
                    self._ahead = None
                elif self._reserving:  # the block in advance is being written: numbers stay in order
                    self._written.wait()
                else:  # ran out before a block in advance was asked for (a tiny block): write one now
                    self._ahead = self._reserve()
            seq = self._next
            self._next += 1
            if not self._reserving and self._ahead is None and self._limit - self._next <= self.block // 2:
                self._reserving = True
                threading.Thread(target=self._reserve_ahead, name="part-ids", daemon=True).start()
            return seq

    def close(self) -> None:
        """Write back the exact mark (a clean restart continues without a gap), unless someone else moved it."""
        with self._lock:
            if self._closed:
                return
            while self._reserving:  # a block in advance being written: its mark is the one to compare with
                self._written.wait()
            self._closed = True
            mark = self._ahead[1] if self._ahead is not None else self._limit
            self._limit, self._ahead = self._next, None  # a number asked for after this raises (closed database)
            with self._db_lock:
                try:
                    self._conn.execute(
                        "UPDATE part_ids SET next_seq = ? WHERE line = ? AND camera = ? AND next_seq = ?",
                        (self._next, self.line, self.camera, mark),
                    )
                finally:
                    self._conn.close()

    # -- the table ----------------------------------------------------------------------------------------------

    def _start(self) -> tuple[int, int, int]:
        """A new run and the first block: (run, first, limit)."""
        with self._db_lock:
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                row = conn.execute(
                    "SELECT next_seq, run FROM part_ids WHERE line = ? AND camera = ?", (self.line, self.camera)
                ).fetchone()
                first, run = (int(row[0]), int(row[1]) + 1) if row else (self._first_of_new_row(conn), 1)
                conn.execute(
                    "INSERT INTO part_ids (line, camera, next_seq, run) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT(line, camera) DO UPDATE SET next_seq = excluded.next_seq, run = excluded.run",
                    (self.line, self.camera, first + self.block, run),
                )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        return run, first, first + self.block

    def _first_of_new_row(self, conn: sqlite3.Connection) -> int:
        """A store made before part numbers were kept: start past every `seq` it holds for this camera."""
        try:
            row = conn.execute("SELECT MAX(seq) FROM verdicts WHERE camera_id = ?", (self.camera,)).fetchone()
        except sqlite3.OperationalError:  # no verdicts table (a bare database)
            return 1
        return int(row[0]) + 1 if row and row[0] is not None else 1

    def _reserve(self) -> tuple[int, int]:
        """The next block, written to disk: (first, limit)."""
        with self._db_lock:
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                (first,) = conn.execute(
                    "SELECT next_seq FROM part_ids WHERE line = ? AND camera = ?", (self.line, self.camera)
                ).fetchone()
                conn.execute(
                    "UPDATE part_ids SET next_seq = ? WHERE line = ? AND camera = ?",
                    (first + self.block, self.line, self.camera),
                )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        return int(first), int(first) + self.block

    def _reserve_ahead(self) -> None:
        try:
            block = self._reserve()
        except Exception:  # the block then gets written when it is needed (and that error is raised there)
            log.exception("reserving part numbers in advance failed")
            block = None
        with self._lock:
            self._reserving = False
            if block is not None and not self._closed:
                self._ahead = block
            self._written.notify_all()
