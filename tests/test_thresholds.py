"""`LineThresholds` over the real `Store` (SQLite on disk): restore at start per recipe, an edit saved, audited and
announced once, validation, the score-floor alarm; and `store.schema.migrate` on stores written with the old DDL
(thresholds rows without a recipe, each recipe's last thresholds as a setting)."""

from __future__ import annotations

import logging
import sqlite3
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from inspector.api import AppDeps, create_app
from inspector.config import StoreConfig
from inspector.store import Store
from inspector.store.schema import SCHEMA_VERSION
from inspector.thresholds import LineThresholds, StaleVersionError, ThresholdsError
from inspector.types import Thresholds
from tests.web_helpers import EDITOR, make_users, serve

NAMES = {0: "rect", 1: "circle"}

# The store's shape before thresholds knew their recipe (what every store made until then has on disk).
OLD_DDL = """
CREATE TABLE verdicts (
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
CREATE TABLE thresholds (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    version INTEGER NOT NULL,
    ts REAL NOT NULL,
    user TEXT NOT NULL,
    comment TEXT NOT NULL,
    json TEXT NOT NULL
);
CREATE TABLE audit (
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
CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


def rules(version: int, rect: float) -> Thresholds:
    return Thresholds.model_validate({"version": version, "classes": {"rect": {"min_confidence": rect}}})


def store_config(tmp_path: Path) -> StoreConfig:
    return StoreConfig(path=tmp_path / "inspector.db", images_dir=tmp_path / "images")


def old_store(
    tmp_path: Path, *, verdict_recipes: list[str], rows: list[Thresholds], settings: dict[str, Thresholds]
) -> Path:
    """A database in the old shape: verdicts of `verdict_recipes`, unlabelled thresholds `rows`, and the old
    per-recipe settings `thresholds.<recipe>`."""
    path = tmp_path / "inspector.db"
    conn = sqlite3.connect(path)
    with conn:
        conn.executescript(OLD_DDL)
        for i, recipe in enumerate(verdict_recipes, 1):
            conn.execute(
                "INSERT INTO verdicts (part_id, seq, camera_id, ts, decision, reasons, thresholds_version, recipe, "
                "model_sha256, n_detections, n_kept) VALUES (?, ?, 'cam', ?, 'pass', '[]', 1, ?, ?, 0, 0)",
                (i, i, time.time(), recipe, "0" * 64),
            )
        for t in rows:
            conn.execute(
                "INSERT INTO thresholds (version, ts, user, comment, json) VALUES (?, ?, 'qa', '', ?)",
                (t.version, time.time(), t.model_dump_json()),
            )
        for recipe, t in settings.items():
            conn.execute("INSERT INTO settings VALUES (?, ?)", (f"thresholds.{recipe}", t.model_dump_json()))
        conn.execute("INSERT INTO settings VALUES ('auth.first_user', 'kept')")
    conn.close()
    return path


def table(path: Path, sql: str) -> list[tuple[Any, ...]]:
    """Rows read on a connection of the test's own, as anyone opening the file would see them."""
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def test_migration_of_a_one_recipe_store_labels_its_rows_and_drops_the_setting(tmp_path: Path) -> None:
    """The usual old store: every edit was in the table and in the setting. The rows become `default`'s, the
    setting (the same thresholds as the newest row) adds nothing and is dropped; the auth setting stays."""
    path = old_store(
        tmp_path,
        verdict_recipes=["default", "default"],
        rows=[rules(1, 0.25), rules(2, 0.5), rules(3, 0.6)],
        settings={"default": rules(3, 0.6)},
    )
    store = Store(store_config(tmp_path), NAMES)
    try:
        assert store.latest_thresholds("default") == rules(3, 0.6)
        assert [(r.version, r.recipe) for r in store.threshold_history()] == [
            (3, "default"),
            (2, "default"),
            (1, "default"),
        ]
        assert store.get_setting("thresholds.default") is None and store.get_setting("auth.first_user") == "kept"
    finally:
        store.close()
    assert table(path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
    Store(store_config(tmp_path), NAMES).close()  # opening a migrated store again changes nothing
    assert table(path, "SELECT COUNT(*) FROM thresholds") == [(3,)]


def test_migration_of_a_store_without_verdicts_gives_its_rows_to_default(tmp_path: Path) -> None:
    old_store(tmp_path, verdict_recipes=[], rows=[rules(1, 0.25), rules(2, 0.4)], settings={})
    store = Store(store_config(tmp_path), NAMES)
    try:
        assert store.latest_thresholds() == rules(2, 0.4)
    finally:
        store.close()


def test_migration_of_a_multi_recipe_store_never_gives_default_another_products_thresholds(tmp_path: Path) -> None:
    """Two products ran: the old unlabelled rows mix them (here the last one is pcb's v7 edit), so they get recipe
    `''`. Each recipe's setting becomes its newest row; `default`, never edited, restores nothing and starts from
    its config (saved as in use at start), not from pcb's v7."""
    path = old_store(
        tmp_path,
        verdict_recipes=["default", "pcb", "pcb"],
        rows=[rules(1, 0.25), rules(7, 0.8)],
        settings={"pcb": rules(7, 0.8), "mooncake": rules(4, 0.3)},
    )
    store = Store(store_config(tmp_path), NAMES)
    try:
        assert store.latest_thresholds("default") is None
        assert store.latest_thresholds("pcb") == rules(7, 0.8)
        assert store.latest_thresholds("mooncake") == rules(4, 0.3)
        assert [r.recipe for r in store.threshold_history(recipe="")] == ["", ""]
        assert store.get_setting("thresholds.pcb") is None and store.get_setting("thresholds.mooncake") is None

        configured = {"default": rules(1, 0.3), "pcb": rules(1, 0.3), "mooncake": rules(5, 0.35)}
        line = LineThresholds(configured, store=store)
        assert line.current("default") == rules(1, 0.3)
        assert line.current("pcb") == rules(7, 0.8)  # QA's newer edit wins over the config's v1
        assert line.current("mooncake") == rules(5, 0.35)  # the config's higher version wins
    finally:
        store.close()
    assert table(path, "SELECT recipe, version, user FROM thresholds WHERE user = 'system' ORDER BY id") == [
        ("mooncake", 4, "system"),  # moved from the settings (the rows could not say whose v7 was)
        ("pcb", 7, "system"),
        ("default", 1, "system"),  # in use at start
        ("mooncake", 5, "system"),
    ]


def test_restore_at_start_per_recipe(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Each recipe starts from its own newest saved version when it is newer than its config's; the config's
    thresholds in use at start are saved once (not again at the next start with the same config)."""
    configured = {"default": rules(1, 0.25), "pcb": rules(1, 0.25)}
    store = Store(store_config(tmp_path), NAMES)
    try:
        first = LineThresholds(configured, store=store)
        assert [(r.recipe, r.version) for r in store.threshold_history()] == [("pcb", 1), ("default", 1)]
        first.edit("pcb", rules(1, 0.7), expected_version=1, user="qa", names=NAMES)
        first.edit("pcb", rules(1, 0.75), expected_version=2, user="qa", names=NAMES)
        first.edit("default", rules(1, 0.5), expected_version=1, user="qa", names=NAMES)
    finally:
        store.close()

    store = Store(store_config(tmp_path), NAMES)
    try:
        again = LineThresholds(configured, store=store)
        assert again.current("pcb") == rules(3, 0.75) and again.current("default") == rules(2, 0.5)
        assert again.holder("pcb") is not again.holder("default")
        assert len(store.threshold_history(500)) == 5  # nothing saved at this start: what is in force is saved

        # Same version as the saved one but other values: the config wins, with a word on raising the version.
        caplog.set_level(logging.WARNING, logger="inspector.thresholds")
        third = LineThresholds({"default": rules(2, 0.45)}, store=store)
        assert third.current("default") == rules(2, 0.45)
        assert any("raise `version`" in r.getMessage() for r in caplog.records)
        assert store.latest_thresholds("default") == rules(2, 0.45)
        assert store.audit()[0].action == "thresholds.start"
    finally:
        store.close()


def test_an_edit_is_saved_once_audited_once_announced_once(tmp_path: Path) -> None:
    announced: list[dict[str, Any]] = []
    store = Store(store_config(tmp_path), NAMES)
    try:
        line = LineThresholds(
            {"default": rules(1, 0.25), "pcb": rules(1, 0.25)}, store=store, announce=announced.append
        )
        rows_before = table(store.path, "SELECT COUNT(*) FROM thresholds")[0][0]
        audit_before = table(store.path, "SELECT COUNT(*) FROM audit")[0][0]

        old, installed = line.edit("pcb", rules(9, 0.6), expected_version=1, user="qa", comment="why", names=NAMES)
        assert (old.version, installed) == (1, rules(2, 0.6))  # the edit's own version number is not used
        assert line.holder("pcb").get() is installed and line.current("default") == rules(1, 0.25)
        assert table(store.path, "SELECT COUNT(*) FROM thresholds")[0][0] == rows_before + 1
        assert table(store.path, "SELECT COUNT(*) FROM audit")[0][0] == audit_before + 1
        assert table(store.path, "SELECT recipe, version, user, comment FROM thresholds ORDER BY id DESC LIMIT 1") == [
            ("pcb", 2, "qa", "why")
        ]
        audit = store.audit(limit=1)[0]
        assert (audit.user, audit.action, audit.old_version, audit.new_version) == ("qa", "thresholds.update", 1, 2)
        assert announced == [{"event": "thresholds", "old_version": 1, "version": 2, "user": "qa", "recipe": "pcb"}]

        # Refused edits change nothing, save nothing, announce nothing.
        with pytest.raises(StaleVersionError, match="version 2"):
            line.edit("pcb", rules(1, 0.1), expected_version=1, user="qa", names=NAMES)
        with pytest.raises(ThresholdsError, match="unknown classes"):
            line.edit(
                "pcb", Thresholds.model_validate({"classes": {"hole": {}}}), expected_version=2, user="qa", names=NAMES
            )
        with pytest.raises(ThresholdsError, match="finite"):
            line.edit(
                "pcb",
                Thresholds.model_validate({"roi": [[0, 0], [1, 0], [float("nan"), 1]]}),
                expected_version=2,
                user="qa",
                names=NAMES,
            )
        with pytest.raises(KeyError, match="unknown recipe"):
            line.edit("nope", rules(1, 0.3), expected_version=1, user="qa", names=NAMES)
        assert line.current("pcb") == rules(2, 0.6) and len(announced) == 1
        assert table(store.path, "SELECT COUNT(*) FROM thresholds")[0][0] == rows_before + 1
        assert table(store.path, "SELECT COUNT(*) FROM audit")[0][0] == audit_before + 1

        # An announcement that fails does not undo an edit that is in force and saved.
        def broken(event: dict[str, Any]) -> None:
            raise ConnectionError("broker gone")

        line.announce = broken
        assert line.edit("pcb", rules(1, 0.65), expected_version=2, user="qa", names=NAMES)[1].version == 3
        assert store.latest_thresholds("pcb") == rules(3, 0.65)

        # A write that fails leaves the edit out of force: nothing is in force that is not saved and audited.
        store.close()
        with pytest.raises(sqlite3.Error):
            line.edit("pcb", rules(1, 0.7), expected_version=3, user="qa", names=NAMES)
        assert line.current("pcb") == rules(3, 0.65)
    finally:
        store.close()


def test_floor_alarm_is_logged_once_per_change(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="inspector.thresholds")
    line = LineThresholds({"default": rules(1, 0.1), "pcb": rules(1, 0.1)}, floors={"default": 0.25})
    alarm = line.floor_alarm("default", NAMES)
    assert alarm is not None and "min_confidence of rect is below" in alarm and "circle" not in alarm
    assert line.floor_alarm("default", NAMES) == alarm  # asked again (every stats call): not logged again
    assert line.floor_alarm("pcb", NAMES) is None  # no floor known for pcb
    assert [r.getMessage() for r in caplog.records] == [alarm]
    line.edit("default", rules(1, 0.3), expected_version=1, user="qa", names=NAMES)
    assert line.floor_alarm("default", NAMES) is None
    line.edit("default", rules(1, 0.05), expected_version=2, user="qa", names=NAMES)  # the edit checks, and logs
    assert len(caplog.records) == 2 and "thresholds v3" in caplog.records[-1].getMessage()


def test_dashboard_edits_and_history_follow_the_active_recipe(tmp_path: Path) -> None:
    """api -> thresholds -> store: an edit on the dashboard goes to the active recipe's holder and rows; the
    history lists the active recipe's versions unless asked for another's."""
    store = Store(store_config(tmp_path), NAMES)
    line = LineThresholds({"default": rules(1, 0.25), "pcb": rules(4, 0.3)}, store=store)
    active = {"recipe": "default"}
    deps = AppDeps(
        store=store,
        thresholds=line,
        stats=lambda: {},
        names=NAMES,
        recipe=lambda: active["recipe"],
        users=make_users(),
    )
    try:
        with serve(create_app(deps)) as base_url, httpx.Client(base_url=base_url, timeout=30) as c:
            token = c.post("/api/login", json={"username": EDITOR[0], "password": EDITOR[1]}).json()["token"]
            auth = {"Authorization": f"Bearer {token}"}
            active["recipe"] = "pcb"  # the line switched product
            assert c.get("/api/thresholds").json()["thresholds"]["version"] == 4
            body = {"version": 4, "thresholds": {"classes": {"circle": {"min_confidence": 0.6}}}, "comment": "pcb"}
            r = c.put("/api/thresholds", json=body, headers=auth)
            assert r.status_code == 200 and r.json()["thresholds"]["version"] == 5, r.text
            assert line.current("pcb").version == 5 and line.current("default") == rules(1, 0.25)
            history = c.get("/api/thresholds/history").json()
            assert [(h["recipe"], h["version"]) for h in history] == [("pcb", 5), ("pcb", 4)]
            history = c.get("/api/thresholds/history", params={"recipe": "default"}).json()
            assert [(h["recipe"], h["version"]) for h in history] == [("default", 1)]
            stale = c.put("/api/thresholds", json=body, headers=auth)
            assert stale.status_code == 409 and "version 5" in stale.json()["detail"]
            unknown = c.put(
                "/api/thresholds", json={**body, "version": 5, "thresholds": {"classes": {"x": {}}}}, headers=auth
            )
            assert unknown.status_code == 422
    finally:
        store.close()
    assert table(store.path, "SELECT recipe, version FROM thresholds ORDER BY id") == [
        ("default", 1),
        ("pcb", 4),
        ("pcb", 5),
    ]
