"""What the dashboard asks of the database, on the API's own connection (one, behind a lock): verdicts newest
first and by part or id with their detections, counts, installed thresholds versions, the audit log, settings.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from typing import Any

from inspector.store.records import (
    MAX_INT64,
    AuditRecord,
    StoredVerdict,
    ThresholdRecord,
    audit_from_row,
    clamp_int,
    detection_from_row,
    threshold_from_row,
    verdict_from_row,
)
from inspector.store.schema import VERDICT_COLUMNS
from inspector.types import Decision, Thresholds

__all__ = ["Queries"]


class Queries:
    """Reads and the API's few writes (thresholds, audit, settings); `Store` is one.

    Args:
        conn: the API's connection (not the writer's).
        names: class id -> name, to name stored detections.
    """

    def __init__(self, conn: sqlite3.Connection, names: dict[int, str]) -> None:
        self.names = dict(names)
        self._api_conn = conn
        self._api_lock = threading.Lock()
        self._cumulative: tuple[float, dict[str, int]] | None = None  # (monotonic time, counts) of the last count

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
        part_id: int | None = None,
        run: int | None = None,
    ) -> list[StoredVerdict]:
        """Newest first, optionally only one decision / with one reason / of one part id / of one run; `before` /
        `after` are verdict ids (exclusive bounds): `before` pages back through history, `after` asks for what is
        new since. A part id with a run names one part (`inspector.part_ids`)."""
        where: list[str] = ["id < ?"]
        params: list[Any] = [clamp_int(before) if before is not None else MAX_INT64]
        for column, value in (("part_id", part_id), ("run", run)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(clamp_int(value))
        if after is not None:
            where.append("id > ?")
            params.append(clamp_int(after))
        if decision is not None:
            where.append("decision = ?")
            params.append(decision)
        if reason is not None:
            where.append("EXISTS (SELECT 1 FROM json_each(verdicts.reasons) WHERE value = ?)")
            params.append(reason)
        rows = self._query(
            f"SELECT {VERDICT_COLUMNS} FROM verdicts WHERE {' AND '.join(where)} ORDER BY id DESC LIMIT ?",
            (*params, max(0, int(limit))),
        )
        return [verdict_from_row(r) for r in rows]

    def last_id(self) -> int:
        """The id of the newest verdict (0 when empty)."""
        return int(self._query("SELECT COALESCE(MAX(id), 0) FROM verdicts")[0][0])

    def get_verdict(self, part_id: int, run: int | None = None) -> StoredVerdict | None:
        """The newest verdict for `part_id` (of `run`, when given), with its detections. A PLC's part ids may
        repeat across runs; `get_verdict_by_id` names one verdict whatever the ids."""
        found = self.recent_verdicts(part_id=part_id, run=run, limit=1)
        return self._with_detections(found)[0] if found else None

    def get_verdict_by_id(self, verdict_id: int) -> StoredVerdict | None:
        """One verdict by its store id, with its detections."""
        rows = self._query(f"SELECT {VERDICT_COLUMNS} FROM verdicts WHERE id = ?", (clamp_int(verdict_id),))
        return self._with_detections([verdict_from_row(r) for r in rows])[0] if rows else None

    def recent_parts(self, n: int) -> list[StoredVerdict]:
        """The last `n` verdicts with their detections, newest first (for re-deciding under other thresholds)."""
        return self._with_detections(self.recent_verdicts(limit=n))

    def counts(self) -> dict[str, int]:
        """Stored verdicts by decision."""
        rows = self._query("SELECT decision, COUNT(*) FROM verdicts GROUP BY decision")
        out = {d.value: 0 for d in Decision}
        out.update({str(d): int(c) for d, c in rows})
        return out

    def cumulative(self, max_age_s: float = 5.0) -> dict[str, int]:
        """The stored verdicts of every run (those retention kept) as the dashboard's counters: `decided`, `passed`,
        `rejected`, `runs` (distinct known runs). Counted at most every `max_age_s` (a scan of an index), as the
        dashboard asks every second."""
        now = time.monotonic()
        if self._cumulative is not None and now - self._cumulative[0] < max_age_s:
            return dict(self._cumulative[1])
        by_decision = self.counts()
        (runs,) = self._query("SELECT COUNT(DISTINCT run) FROM verdicts WHERE run > 0")[0]
        out = {
            "decided": sum(by_decision.values()),
            "passed": by_decision[Decision.PASS.value],
            "rejected": by_decision[Decision.REJECT.value],
            "runs": int(runs),
        }
        self._cumulative = (now, out)
        return dict(out)

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
        for row in rows:
            by_id[row[0]].detections.append(detection_from_row(row[1:], self.names))  # type: ignore[union-attr]
        return verdicts

    # ------------------------------------------------------------------------------- thresholds and audit
    def record_thresholds(
        self,
        new: Thresholds,
        *,
        recipe: str = "default",
        user: str,
        comment: str = "",
        old: Thresholds | None = None,
        action: str = "thresholds.update",
    ) -> int:
        """Store `new` as `recipe`'s installed version and audit the change from `old`, in one transaction;
        returns the audit id."""
        now = time.time()
        new_json = new.model_dump_json()
        with self._api_lock:
            conn = self._api_conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute(
                    "INSERT INTO thresholds (version, ts, user, comment, json, recipe) VALUES (?, ?, ?, ?, ?, ?)",
                    (new.version, now, user, comment, new_json, recipe),
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
            (clamp_int(before) if before is not None else MAX_INT64, max(0, int(limit))),
        )
        return [audit_from_row(r) for r in rows]

    def threshold_history(self, limit: int = 50, recipe: str | None = None) -> list[ThresholdRecord]:
        """Installed thresholds versions of `recipe` (None: of every recipe), newest first."""
        where, params = ("WHERE recipe = ?", (recipe,)) if recipe is not None else ("", ())
        rows = self._query(
            f"SELECT id, version, ts, user, comment, json, recipe FROM thresholds {where} ORDER BY id DESC LIMIT ?",
            (*params, max(0, int(limit))),
        )
        return [threshold_from_row(r) for r in rows]

    def latest_thresholds(self, recipe: str = "default") -> Thresholds | None:
        """The thresholds installed last for `recipe` (to restore them after a restart), or None."""
        history = self.threshold_history(1, recipe)
        return Thresholds.model_validate(history[0].thresholds) if history else None

    # ------------------------------------------------------------------------------------------- settings
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
