"""Part numbers that survive restarts (issue 20): a high-water mark in the store, reserved a block at a time."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from inspector.config import StoreConfig
from inspector.part_ids import PartIds, clock_ids
from inspector.store import Store
from inspector.store.ids import StoredIds
from inspector.store.schema import connect

ROOT_DIR = Path(__file__).resolve().parent.parent


def take(ids: PartIds, n: int) -> list[int]:
    return [ids.next() for _ in range(n)]


def mark(db: Path, line: str = "line1", camera: str = "cam0") -> tuple[int, int]:
    conn = connect(db)
    try:
        row = conn.execute(
            "SELECT next_seq, run FROM part_ids WHERE line = ? AND camera = ?", (line, camera)
        ).fetchone()
    finally:
        conn.close()
    return int(row[0]), int(row[1])


def test_counting_and_clock_numbers() -> None:
    ids = PartIds()
    assert take(ids, 3) == [1, 2, 3] and ids.run == 0
    start = clock_ids(now=1_800_000_000.25)
    assert start.run == start.first == 1_800_000_000_250 and start.next() == 1_800_000_000_250
    later = clock_ids(now=1_800_000_001.25)  # a restart a second later starts past 1000 parts of the first run
    assert later.first == start.first + 1000
    with pytest.raises(ValueError):
        PartIds(first=-1)


def test_a_run_counts_across_blocks_and_a_crash_never_reuses_a_number(tmp_path: Path) -> None:
    db = tmp_path / "inspector.db"
    first = StoredIds(db, "line1", "cam0", block=4)
    got = take(first, 11)  # three blocks, the later ones reserved ahead on a thread or when needed
    assert got == list(range(1, 12)) and first.run == 1
    with first._lock:  # a dead process reserves nothing more: let its block in advance land first
        while first._reserving:
            first._written.wait()
    # No close(): the process died. The next run starts past everything reserved, whatever was used of it.
    second = StoredIds(db, "line1", "cam0", block=4)
    again = take(second, 3)
    assert second.run == 2 and min(again) > max(got)
    second.close()  # a clean stop writes back the exact mark: the next run continues without a gap
    third = StoredIds(db, "line1", "cam0", block=4)
    assert third.run == 3 and third.next() == again[-1] + 1
    third.close()


def test_a_block_in_advance_is_on_disk_before_it_is_needed(tmp_path: Path) -> None:
    db = tmp_path / "inspector.db"
    ids = StoredIds(db, "line1", "cam0", block=10)
    assert mark(db) == (11, 1)
    take(ids, 6)  # past half the block: the next one is reserved on a thread
    deadline = time.monotonic() + 10
    while mark(db)[0] != 21 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert mark(db) == (21, 1)
    assert take(ids, 10) == list(range(7, 17))
    ids.close()
    assert mark(db) == (17, 1)


def test_numbers_are_unique_across_threads(tmp_path: Path) -> None:
    ids = StoredIds(tmp_path / "inspector.db", "line1", "cam0", block=16)
    out: list[list[int]] = [[] for _ in range(4)]
    threads = [threading.Thread(target=lambda i=i: out[i].extend(take(ids, 500))) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ids.close()
    every = [n for chunk in out for n in chunk]
    assert len(set(every)) == 2000 and sorted(every) == list(range(1, 2001))


def test_cameras_and_lines_count_apart(tmp_path: Path) -> None:
    db = tmp_path / "inspector.db"
    a, b, c = (StoredIds(db, line, cam, block=4) for line, cam in (("l1", "cam0"), ("l1", "cam1"), ("l2", "cam0")))
    assert a.next() == b.next() == c.next() == 1 and a.run == b.run == c.run == 1
    for ids in (a, b, c):
        ids.close()


def test_a_store_from_before_part_numbers_starts_past_its_verdicts(tmp_path: Path) -> None:
    config = StoreConfig(path=tmp_path / "inspector.db", images_dir=tmp_path / "images")
    Store(config, {}).close()  # the tables
    conn = connect(config.path)
    conn.executemany(
        "INSERT INTO verdicts (part_id, seq, camera_id, ts, decision, reasons, thresholds_version, recipe, "
        "model_sha256, n_detections, n_kept) VALUES (?, ?, ?, 0, 'pass', '[]', 1, 'default', '', 0, 0)",
        [(i, i, "cam0") for i in range(1, 74)] + [(500, 500, "cam9")],
    )
    conn.close()
    ids = StoredIds(config.path, "line1", "cam0")
    assert ids.next() == 74
    ids.close()


_CRASH = """
import os, signal, sys
from inspector.store.ids import StoredIds
ids = StoredIds(sys.argv[1], "line1", "cam0", block=int(sys.argv[2]))
print(" ".join(str(ids.next()) for _ in range(int(sys.argv[3]))), flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_kill_9_never_reuses_a_number(tmp_path: Path) -> None:
    db = tmp_path / "inspector.db"
    seen: list[int] = []
    runs = []
    for n in (7, 3, 12):
        result = subprocess.run(
            [sys.executable, "-c", _CRASH, str(db), "5", str(n)], cwd=ROOT_DIR, capture_output=True, text=True
        )
        assert result.returncode == -9, result.stderr
        numbers = [int(x) for x in result.stdout.split()]
        assert len(numbers) == n and numbers == sorted(numbers)
        assert not set(numbers) & set(seen), "a number handed out again after kill -9"
        seen += numbers
        runs.append(mark(db)[1])
    assert runs == [1, 2, 3]
