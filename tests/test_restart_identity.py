"""Part identity across a `kill -9` (issue 20): `inspector run` on a free-run synthetic line with its store on disk
and a real Mosquitto is killed mid-line and started again, while `inspector plc-sim` follows the part ids across
both processes.

On MQTT no (`part_id`, `seq`) pair repeats (the second run's numbers start past the block the first one had
reserved), every answer carries its `run`, and the PLC counts 0 duplicates and 0 missing answers: the ids skipped
at the restart are no parts, which it learns from the newer `run`. The store keeps both runs' verdicts apart.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from inspector.broker import EmbeddedBroker
from inspector.config import DEFAULT_MODEL
from tests.mqtt_helpers import Recorder, mosquitto
from tests.test_run_plcsim import CAMERA, FPS, GATE_MS, LINE, ROOT_TOPIC, inspector, start_plc_sim

FIRST_RUN_PARTS = 12  # answered before the kill
PARTS = 30  # the PLC's count over both runs


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    with mosquitto(tmp_path / "broker") as b:
        yield b


def line_yaml(tmp_path: Path, url: str) -> Path:
    """The synthetic PCB line paced at FPS (free-run), the shipped model, the test broker, a store on disk."""
    path = tmp_path / "line.yaml"
    path.write_text(
        f"""camera:
  id: {CAMERA}
  source: synthetic
  fps: {FPS}
  synthetic: {{seed: 7, defect_rate: 0.4}}
model:
  path: {DEFAULT_MODEL}
pipeline:
  gate_ms: {GATE_MS}
mqtt:
  url: {url}
  line: {LINE}
dashboard: {{enabled: false}}
store: {{path: {tmp_path / "db.sqlite"}, images_dir: {tmp_path / "images"}}}
"""
    )
    return path


def start_run(config: Path, tmp_path: Path, name: str) -> subprocess.Popen[str]:
    """`inspector run`, its log in a file (a pipe nobody reads could fill and stall it), its verdicts as JSON
    lines."""
    log = (tmp_path / f"{name}.log").open("w")
    try:
        return inspector(
            "run", "--config", str(config), "--verdicts", str(tmp_path / f"{name}.jsonl"), stdout=log, stderr=log
        )
    finally:
        log.close()  # the child has its own copy


def answered(rec: Recorder) -> int:
    return len(rec.payloads("reject"))


def test_kill_9_and_restart_never_repeat_a_part_and_the_plc_misses_none(tmp_path: Path, broker: EmbeddedBroker) -> None:
    config = line_yaml(tmp_path, broker.url)
    topics = [f"{ROOT_TOPIC}/reject", f"{ROOT_TOPIC}/verdict"]
    with Recorder(broker.url, topics) as rec:
        plc = start_plc_sim(broker, PARTS)
        first = start_run(config, tmp_path, "first")
        second: subprocess.Popen[str] | None = None
        try:
            ok = rec.wait_for(lambda r: answered(r) >= FIRST_RUN_PARTS or first.poll() is not None, 240)
            assert ok and first.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
            os.kill(first.pid, signal.SIGKILL)
            first.wait(timeout=30)
            killed_after = answered(rec)

            second = start_run(config, tmp_path, "second")
            try:
                stdout, stderr = plc.communicate(timeout=300)  # the PLC's PARTS went through its gate
            except subprocess.TimeoutExpired:
                plc.kill()
                stdout, stderr = plc.communicate()
                raise AssertionError(f"plc-sim did not finish: {stderr[-2000:]}") from None
            assert plc.returncode == 0, stderr
            report: dict[str, Any] = json.loads(stdout.strip().splitlines()[-1])
            second.send_signal(signal.SIGTERM)
            assert second.wait(timeout=60) == 0, (tmp_path / "second.log").read_text()[-3000:]
        finally:
            for proc in (first, second, plc):
                if proc is not None and proc.poll() is None:
                    proc.kill()
                    proc.wait()
        time.sleep(0.5)  # the last QoS 1 deliveries to the recorder
        rejects, verdicts = rec.payloads("reject"), rec.payloads("verdict")

    # The PLC: every part answered, once; the ids skipped at the restart counted as no parts.
    assert report["parts"] == PARTS
    assert report["duplicates"] == 0 and report["missing_answers"] == 0, report
    assert report["late_answers"] == 0 and report["unexpected"] == 0, report

    # MQTT: no (part_id, seq) pair twice, on either topic; two runs, the second numbering past the first.
    for payloads in (rejects, verdicts):
        pairs = [(p["part_id"], p["seq"]) for p in payloads]
        assert len(pairs) == len(set(pairs)), "a (part_id, seq) pair repeated"
        assert all(p["part_id"] == p["seq"] for p in payloads)  # free-run: the part id is its number
    runs = sorted({p["run"] for p in rejects})
    assert runs == [1, 2], runs  # a fresh store: its first and second start
    before = [p["part_id"] for p in rejects if p["run"] == 1]
    after = [p["part_id"] for p in rejects if p["run"] == 2]
    assert len(before) >= killed_after >= FIRST_RUN_PARTS and after
    assert min(after) > max(before)
    assert {(p["part_id"], p["run"]) for p in verdicts} <= {(p["part_id"], p["run"]) for p in rejects}

    # The JSON lines carry the run; the store keeps both runs' verdicts, each part once.
    lines = [
        json.loads(x)
        for name in ("first", "second")
        for x in (tmp_path / f"{name}.jsonl").read_text().splitlines()
        if x.strip().endswith("}")
    ]
    assert {x["run"] for x in lines} == {1, 2}
    conn = sqlite3.connect(tmp_path / "db.sqlite")
    try:
        stored = conn.execute("SELECT run, part_id, seq FROM verdicts").fetchall()
    finally:
        conn.close()
    assert {run for run, _, _ in stored} == {1, 2}
    assert len({(part_id, seq) for _, part_id, seq in stored}) == len(stored)
