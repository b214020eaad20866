"""The database's shape and how it is opened: the SQL schema (verdicts, detections, thresholds versions, audit log,
settings) and a connection's set-up (WAL, `synchronous=NORMAL`, busy timeout).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

__all__ = ["SCHEMA", "VERDICT_COLUMNS", "connect"]

SCHEMA = """
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

VERDICT_COLUMNS = (
    "id, part_id, seq, camera_id, ts, decision, reasons, thresholds_version, recipe, model_sha256, latency_ms, "
    "n_detections, n_kept, image"
)


def connect(path: Path) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit), usable from any thread, with the pragmas set."""
    conn = sqlite3.connect(path, timeout=10.0, check_same_thread=False, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")  # durable through a process crash; fsync at checkpoints only
    conn.execute("PRAGMA busy_timeout=10000")
    return conn
