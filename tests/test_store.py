"""The store: verdict rows and detections, image archive (sampling, quota, retention, bounded encoder queue),
threshold versions and audit, restart and `kill -9` survival."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from inspector.config import StoreConfig
from inspector.decide import decide
from inspector.store import Store
from inspector.types import ClassThresholds, Decision, Detections, Thresholds, Verdict
from tests.web_helpers import NAMES

ROOT = Path(__file__).resolve().parent.parent


def make_store(tmp_path: Path, **config: object) -> Store:
    kwargs = {k: v for k, v in config.items() if k in {"queue_size", "max_pending_images", "maintenance_interval_s"}}
    fields = {k: v for k, v in config.items() if k not in kwargs}
    cfg = StoreConfig(path=tmp_path / "db" / "inspector.db", images_dir=tmp_path / "images", **fields)
    return Store(cfg, NAMES, **kwargs)  # type: ignore[arg-type]


def verdict(part_id: int, confidences: list[float], classes: list[int] | None = None, image: bool = True) -> Verdict:
    """A decided part with one 20x20 box per confidence (class 0 unless given) under the default thresholds."""
    n = len(confidences)
    xyxy = np.array([[10 + 30 * i, 10, 30 + 30 * i, 30] for i in range(n)], np.float32).reshape(n, 4)
    dets = Detections(xyxy, np.array(confidences, np.float32), np.array(classes or [0] * n, np.int64))
    v = decide(dets, Thresholds(), NAMES, part_id)
    v.seq = part_id
    if image:
        v.image = np.random.default_rng(part_id).integers(0, 255, (64, 96, 3), dtype=np.uint8)
    return v


def test_verdicts_and_detections_round_trip(tmp_path: Path) -> None:
    store = make_store(tmp_path, pass_sample_rate=0.0)
    try:
        store.handle(verdict(1, []))  # pass
        store.handle(verdict(2, [0.9, 0.1], [1, 0]))  # reject by circle; rect below 0.25 not kept
        store.handle(verdict(3, [0.5]))  # reject by rect
        assert store.flush()
        newest = store.recent_verdicts()
        assert [v.part_id for v in newest] == [3, 2, 1]
        assert [v.part_id for v in store.recent_verdicts(decision="reject")] == [3, 2]
        assert [v.part_id for v in store.recent_verdicts(reason="circle")] == [2]
        assert [v.part_id for v in store.recent_verdicts(limit=1, before=newest[0].id)] == [2]
        assert [v.part_id for v in store.recent_verdicts(after=newest[1].id)] == [3]

        v2 = store.get_verdict(2)
        assert v2 is not None and v2.decision == "reject" and v2.reasons == ["circle"]
        assert v2.n_detections == 2 and v2.n_kept == 1
        assert [(d.class_name, d.kept) for d in v2.detections or []] == [("circle", True), ("rect", False)]
        assert v2.detections[0].confidence == pytest.approx(0.9)  # type: ignore[index]
        assert v2.detections[0].xyxy == (10.0, 10.0, 30.0, 30.0)  # type: ignore[index]
        assert len(v2.to_detections()) == 2
        assert store.get_verdict(99) is None
        assert store.counts() == {"pass": 1, "reject": 2}
        # Images: rejects only at pass_sample_rate 0, readable JPEGs of the same size.
        assert store.get_verdict(1).image is None  # type: ignore[union-attr]
        path = store.image_file(v2)
        assert path is not None and path.suffix == ".jpg"
        assert cv2.imread(str(path)).shape == (64, 96, 3)
    finally:
        store.close()


def test_passes_are_sampled_at_the_configured_rate(tmp_path: Path) -> None:
    store = make_store(tmp_path, pass_sample_rate=0.25)
    try:
        for i in range(40):
            store.handle(verdict(i, []))
        assert store.flush()
        with_image = [v for v in store.recent_verdicts(limit=100) if v.image]
        assert len(with_image) == 10
        assert store.stats()["images_written"] == 10
    finally:
        store.close()


def test_failsafe_and_error_verdicts_are_stored(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    try:
        v = Verdict(part_id=7, decision=Decision.REJECT, reasons=["uninspected"], thresholds_version=3)
        store.handle(v)
        assert store.flush()
        stored = store.get_verdict(7)
        assert stored is not None and stored.failsafe and stored.reasons == ["uninspected"]
        assert stored.thresholds_version == 3 and stored.image is None and stored.detections == []
    finally:
        store.close()


def test_quota_prunes_the_oldest_images_and_keeps_rows(tmp_path: Path) -> None:
    store = make_store(tmp_path, quota_mb=0.1, max_pending_images=100)  # 64x96 noise JPEGs: ~5 KB, room for ~20
    try:
        for i in range(60):
            store.handle(verdict(i, [0.9]))
        assert store.flush()
        stats = store.stats()
        assert stats["image_bytes"] <= 0.1 * 1024 * 1024
        assert stats["images_pruned"] > 0
        on_disk = sum(p.stat().st_size for p in (tmp_path / "images").rglob("*.jpg"))
        assert on_disk == stats["image_bytes"]
        rows = store.recent_verdicts(limit=100)
        assert len(rows) == 60  # rows are kept, only images go
        assert rows[0].image is not None and store.image_file(rows[0]) is not None  # the newest survives
        assert rows[-1].image is None  # the oldest went
    finally:
        store.close()


def test_retention_removes_old_rows_and_images(tmp_path: Path) -> None:
    store = make_store(tmp_path, retention_days=1.0)
    try:
        for i in range(5):
            store.handle(verdict(i, [0.9], [0]))
        assert store.flush()
        assert store.apply_retention() == 0  # all fresh
        removed = store.apply_retention(now=time.time() + 2 * 86400)
        assert removed == 5
        assert store.recent_verdicts() == []
        assert not list((tmp_path / "images").rglob("*.jpg"))
        assert store.stats()["image_bytes"] == 0
        with sqlite3.connect(store.path) as conn:
            assert conn.execute("SELECT COUNT(*) FROM detections").fetchone()[0] == 0
    finally:
        store.close()


def test_bounded_queues_count_what_they_drop(tmp_path: Path) -> None:
    """A stalled writer: beyond the image budget verdicts go without images, beyond the queue they are counted."""
    store = make_store(tmp_path, queue_size=5, max_pending_images=2)
    release = threading.Event()
    original = store._archive.write

    def slow_write_image(p):  # type: ignore[no-untyped-def]
        release.wait(30)
        return original(p)

    store._archive.write = slow_write_image  # type: ignore[method-assign]
    try:
        t0 = time.monotonic()
        for i in range(20):
            store.handle(verdict(i, [0.9]))
        assert time.monotonic() - t0 < 5.0  # handle() never waits for the writer
        release.set()
        assert store.flush()
        s = store.stats()
        assert s["rows_dropped"] > 0 and s["images_skipped"] > 0
        assert s["rows_written"] + s["rows_dropped"] == 20
        assert s["images_written"] <= 2 + 1  # two pending plus the one the writer had taken
        assert len(store.recent_verdicts(limit=100)) == s["rows_written"]
        store.handle(verdict(100, [0.9]))  # the writer caught up: the budgets are free again
        assert store.flush()
        assert store.get_verdict(100).image is not None  # type: ignore[union-attr]
    finally:
        release.set()
        store.close()


def test_thresholds_history_audit_and_settings(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    try:
        assert store.latest_thresholds() is None
        v1 = Thresholds()
        v2 = Thresholds(version=2, classes={"rect": ClassThresholds(min_confidence=0.6)})
        store.record_thresholds(v1, user="system", comment="start", action="thresholds.start")
        store.record_thresholds(v2, user="qa", comment="fewer false rejects", old=v1)
        assert store.latest_thresholds() == v2
        assert [r.version for r in store.threshold_history()] == [2, 1]
        audit = store.audit()
        assert [(a.user, a.action, a.old_version, a.new_version) for a in audit] == [
            ("qa", "thresholds.update", 1, 2),
            ("system", "thresholds.start", None, 1),
        ]
        assert audit[0].old == v1.model_dump(mode="json") and audit[0].new == v2.model_dump(mode="json")
        assert audit[0].comment == "fewer false rejects"
        assert [a.id for a in store.audit(before=audit[0].id)] == [audit[1].id]
        store.put_setting("k", "a")
        store.put_setting("k", "b")
        assert store.get_setting("k") == "b" and store.get_setting("missing") is None
    finally:
        store.close()


def test_survives_restart(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    store.handle(verdict(1, [0.9]))
    store.record_thresholds(Thresholds(version=4), user="qa")
    store.close()
    again = make_store(tmp_path)
    try:
        v = again.get_verdict(1)
        assert v is not None and again.image_file(v) is not None
        assert again.latest_thresholds() == Thresholds(version=4)
        assert again.stats()["image_bytes"] > 0  # the archive size is recounted, so the quota still holds
        again.handle(verdict(2, []))
        assert again.flush()
        assert [v.part_id for v in again.recent_verdicts()] == [2, 1]
    finally:
        again.close()


_WRITER = textwrap.dedent(
    """
    import sys, numpy as np
    from pathlib import Path
    from inspector.config import StoreConfig
    from inspector.decide import decide
    from inspector.store import Store
    from inspector.types import Detections, Thresholds

    root = Path(sys.argv[1])
    store = Store(StoreConfig(path=root / "inspector.db", images_dir=root / "images", pass_sample_rate=0.5),
                  {0: "rect", 1: "circle"})
    rng = np.random.default_rng(0)
    i = 0
    while True:  # until killed
        i += 1
        n = int(rng.integers(0, 4))
        dets = Detections(rng.uniform(0, 100, (n, 4)).astype(np.float32), rng.uniform(0, 1, n).astype(np.float32),
                          rng.integers(0, 2, n))
        v = decide(dets, Thresholds(), {0: "rect", 1: "circle"}, i)
        v.image = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
        store.handle(v)
        if i % 50 == 0:
            store.flush()
            print(i, flush=True)
    """
)


def test_survives_kill_9_while_writing(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(tmp_path)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(4)]  # 200 parts written and more on the way
        assert all(line.strip() for line in lines), lines
        time.sleep(0.2)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert proc.returncode == -signal.SIGKILL

    store = Store(StoreConfig(path=tmp_path / "inspector.db", images_dir=tmp_path / "images"), NAMES)
    try:
        assert store.integrity_check() == "ok"
        rows = store.recent_verdicts(limit=100_000)
        assert len(rows) >= 200
        # Every committed row's image was written before its commit, and detections match their counts.
        for v in rows[:300]:
            if v.image:
                assert store.image_file(v) is not None, v.image
        full = store.get_verdict(rows[0].part_id)
        assert full is not None and len(full.detections or []) == full.n_detections
        store.handle(verdict(10**6, [0.9]))  # and it takes new work
        assert store.flush()
        assert store.get_verdict(10**6) is not None
    finally:
        store.close()


def test_handle_copies_the_frame(tmp_path: Path) -> None:
    """A source may reuse its frame buffer: the stored image is the frame as it was when handed over."""
    store = make_store(tmp_path)
    try:
        v = verdict(1, [0.9])
        v.image = np.full((32, 32, 3), 200, np.uint8)
        store.handle(v)
        v.image[:] = 0  # the camera overwrites its buffer
        assert store.flush()
        stored = store.get_verdict(1)
        assert stored is not None
        image = cv2.imread(str(store.image_file(stored)))
        assert abs(float(image.mean()) - 200) < 5
    finally:
        store.close()


def test_writer_survives_a_failing_batch(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    original = store._writer.insert
    calls = {"n": 0}

    def flaky_insert(conn, batch):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 1:
            raise sqlite3.OperationalError("disk I/O error")
        return original(conn, batch)

    store._writer.insert = flaky_insert  # type: ignore[method-assign]
    try:
        store.handle(verdict(1, [0.9]))
        assert store.flush()
        store.handle(verdict(2, [0.9]))
        assert store.flush()
        s = store.stats()
        assert s["write_errors"] == 1 and s["rows_written"] == 1 and s["writer_alive"]
        assert [v.part_id for v in store.recent_verdicts()] == [2]
    finally:
        store.close()


def test_verdicts_keep_their_run_and_an_older_store_gains_the_column(tmp_path: Path) -> None:
    """Schema version 2: each verdict keeps its `run`; a store made before (version 1, no `run` column) gets the
    column on opening, its old rows reading back as run 0 (not known)."""
    store = make_store(tmp_path)
    store.handle(verdict(1, []))
    store.close()
    path = tmp_path / "db" / "inspector.db"
    conn = sqlite3.connect(path)  # back to version 1's shape
    conn.executescript("DROP INDEX verdicts_run_part; ALTER TABLE verdicts DROP COLUMN run; PRAGMA user_version = 1;")
    conn.close()
    again = make_store(tmp_path)
    try:
        new = verdict(1, [0.9])
        new.run = 7
        again.handle(new)
        assert again.flush()
        assert [(v.part_id, v.run) for v in again.recent_verdicts()] == [(1, 7), (1, 0)]
    finally:
        again.close()
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone() == (2,)
        assert conn.execute("SELECT run FROM verdicts ORDER BY id").fetchall() == [(0,), (7,)]
    finally:
        conn.close()
