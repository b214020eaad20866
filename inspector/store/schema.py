"""The database's shape and how it is opened: the SQL schema (verdicts, detections, thresholds versions per recipe,
audit log, settings), the upgrade of stores made by older versions (`migrate`), and a connection's set-up (WAL,
`synchronous=NORMAL`, busy timeout).
"""

from __future__ import annotations

import logging
import sqlite3
import time
from pathlib import Path

from pydantic import ValidationError

from inspector.types import Thresholds

__all__ = ["SCHEMA", "SCHEMA_VERSION", "VERDICT_COLUMNS", "connect", "migrate"]

log = logging.getLogger(__name__)

SCHEMA_VERSION = 2  # `PRAGMA user_version` of a store in today's shape (0: made before `migrate` existed)

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
    image_bytes INTEGER NOT NULL DEFAULT 0,
    run INTEGER NOT NULL DEFAULT 0  -- last, as ALTER TABLE adds it; 0: stored before runs were kept
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
    json TEXT NOT NULL,
    recipe TEXT NOT NULL DEFAULT ''  -- last, as ALTER TABLE adds it to an old store
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
    "id, part_id, seq, run, camera_id, ts, decision, reasons, thresholds_version, recipe, model_sha256, latency_ms, "
    "n_detections, n_kept, image"
)


_OLD_SETTING = "thresholds."  # + recipe: before SCHEMA_VERSION 1, each recipe's last thresholds were a setting


def migrate(conn: sqlite3.Connection) -> None:
    """Bring a store made by an older inspector to today's shape, in one transaction (nothing when it is there).

    Version 2: verdicts carry the `run` (the start of the inspector) that decided them; older rows get 0 (not
    known). An index on (run, part_id) finds a part by the pair that names it.

    Version 1: thresholds versions carry their recipe. A store whose verdicts and settings name one recipe at most
    gives its old rows that recipe (`default` when none); a store of several recipes cannot tell whose they were,
    so they get recipe `''` and restore for none. Each old per-recipe setting `thresholds.<recipe>` (the recipe's
    last thresholds) becomes that recipe's newest row unless its newest row already holds them, and is dropped.
    """
    if conn.execute("PRAGMA user_version").fetchone()[0] >= SCHEMA_VERSION:
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        columns = {row[1] for row in conn.execute("PRAGMA table_info(thresholds)")}
        settings = conn.execute(
            "SELECT key, value FROM settings WHERE substr(key, 1, ?) = ? ORDER BY key",
            (len(_OLD_SETTING), _OLD_SETTING),
        ).fetchall()
        if "recipe" not in columns:
            recipes = {key[len(_OLD_SETTING) :] for key, _ in settings}
            recipes |= {r for (r,) in conn.execute("SELECT DISTINCT recipe FROM verdicts")}
            owner = "default" if not recipes else recipes.pop() if len(recipes) == 1 else ""
            conn.execute("ALTER TABLE thresholds ADD COLUMN recipe TEXT NOT NULL DEFAULT ''")
            conn.execute("UPDATE thresholds SET recipe = ?", (owner,))
            log.info("store: thresholds versions labelled with recipe %r", owner)
        for key, value in settings:
            _setting_to_row(conn, key[len(_OLD_SETTING) :], value)
            conn.execute("DELETE FROM settings WHERE key = ?", (key,))
        conn.execute("CREATE INDEX IF NOT EXISTS thresholds_recipe ON thresholds (recipe, id)")
        if "run" not in {row[1] for row in conn.execute("PRAGMA table_info(verdicts)")}:
            conn.execute("ALTER TABLE verdicts ADD COLUMN run INTEGER NOT NULL DEFAULT 0")
            log.info("store: verdicts carry their run (older ones: 0, not known)")
        conn.execute("CREATE INDEX IF NOT EXISTS verdicts_run_part ON verdicts (run, part_id, id)")
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def _setting_to_row(conn: sqlite3.Connection, recipe: str, value: str) -> None:
    """An old per-recipe thresholds setting as the recipe's newest thresholds row (unless it is that already)."""
    saved = _parsed(value)
    if saved is None:
        log.warning("store: dropping recipe %s's old thresholds setting, it does not validate: %s", recipe, value)
        return
    newest = conn.execute("SELECT json FROM thresholds WHERE recipe = ? ORDER BY id DESC LIMIT 1", (recipe,)).fetchone()
    if newest is not None and _parsed(newest[0]) == saved:
        return
    conn.execute(
        "INSERT INTO thresholds (version, ts, user, comment, json, recipe) VALUES (?, ?, ?, ?, ?, ?)",
        (saved.version, time.time(), "system", "moved from the per-recipe setting", saved.model_dump_json(), recipe),
    )


def _parsed(text: str) -> Thresholds | None:
    try:
        return Thresholds.model_validate_json(text)
    except ValidationError:
        return None


def connect(path: Path) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit), usable from any thread, with the pragmas set."""
    conn = sqlite3.connect(path, timeout=10.0, check_same_thread=False, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")  # durable through a process crash; fsync at checkpoints only
    conn.execute("PRAGMA busy_timeout=10000")
    return conn
