"""`inspector plc-sim` against `inspector run`, two processes on a real Mosquitto, over a folder of synthetic PCB
scans whose truth is known (`inspector.sim.write_folder`: `good/`, `bad/` and `truth.json`).

The PLC's report must match the truth: every part reaches the gate with an answer, and its escapes and false
rejects are exactly those that the inspector's own recorded verdicts (`--verdicts`) and the truth say. The model is
the shipped DeepPCB reference, an interim checkpoint: nothing here depends on how good it is.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from inspector.broker import EmbeddedBroker
from inspector.config import DEFAULT_MODEL
from inspector.sim import write_folder
from tests.mqtt_helpers import Recorder, mosquitto

ROOT = Path(__file__).resolve().parent.parent
LINE, CAMERA = "lineR", "camR"
ROOT_TOPIC = f"inspector/{LINE}/{CAMERA}"
GATE_MS = 3000  # generous: two shared cores; the same for the inspector's deadline and the PLC's gate
FPS = 6


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    with mosquitto(tmp_path / "broker") as b:
        yield b


def inspector(*args: str, **kwargs: Any) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INSPECTOR_")}
    env.update(YOLO_OFFLINE="1", PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-m", "inspector", *args], cwd=ROOT, env=env, text=True, **kwargs)


def line_yaml(tmp_path: Path, folder: Path, url: str, loop: bool = False) -> Path:
    """A folder camera paced at FPS (so the PLC's conveyor can follow), the shipped model, the test broker."""
    path = tmp_path / "line.yaml"
    path.write_text(
        f"""camera:
  id: {CAMERA}
  source: folder
  uri: {folder}
  loop: {str(loop).lower()}
  fps: {FPS}
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


def start_plc_sim(broker: EmbeddedBroker, parts: int) -> subprocess.Popen[str]:
    """`inspector plc-sim` following the inspector's part ids; returns once it is connected to the broker.

    In free-run the simulator learns the parts from the answers and ignores ids from before its first one, so it
    must listen before the inspector's first part: the broker's log says when its client connected.
    """
    proc = inspector(
        "plc-sim",
        "--mqtt",
        broker.url,
        "--line",
        LINE,
        "--camera",
        CAMERA,
        "--rate",
        str(FPS),
        "--gate-ms",
        str(GATE_MS),
        "--parts",
        str(parts),
        "--json",
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 60
    while f"as plcsim-{LINE}-{CAMERA} " not in broker.log_tail(200):  # its fixed client id
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "plc-sim did not connect"
        time.sleep(0.05)
    time.sleep(0.5)  # its SUBSCRIBE follows the CONNACK at once; leave it a moment on a busy machine
    return proc


def plc_report(proc: subprocess.Popen[str]) -> dict[str, Any]:
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    return json.loads(stdout.strip().splitlines()[-1])


def expected_from(records: list[dict[str, Any]], truth: list[bool]) -> dict[str, Any]:
    """What the gate should count, from the inspector's verdicts (part k is the folder's k-th image, looping)."""
    defective = {r["part_id"]: truth[(r["part_id"] - 1) % len(truth)] for r in records}
    rejected = {r["part_id"]: r["decision"] == "reject" for r in records}
    return {
        "parts": len(records),
        "rejected": sum(rejected.values()),
        "defective": sum(defective.values()),
        "escapes": sum(defective[i] and not rejected[i] for i in defective),
        "false_rejects": sum(rejected[i] and not defective[i] for i in defective),
        "escape_ids": sorted(i for i in defective if defective[i] and not rejected[i]),
        "false_reject_ids": sorted(i for i in defective if rejected[i] and not defective[i]),
    }


def check_report(report: dict[str, Any], expected: dict[str, Any]) -> None:
    assert report["missing_answers"] == 0 and report["late_answers"] == 0 and report["unexpected"] == 0
    assert report["truth_known"] == expected["parts"]
    assert report["rejected_on_answer"] == report["rejected"]
    got = {k: sorted(v) if k.endswith("_ids") else v for k, v in report.items() if k in expected}
    assert got == expected


def test_plc_sim_report_matches_the_truth_of_a_labelled_folder(tmp_path: Path, broker: EmbeddedBroker) -> None:
    folder = tmp_path / "parts"
    manifest = json.loads(write_folder(folder, 24, seed=11, defect_rate=0.5).read_text())
    truth = [bool(p["defective"]) for p in manifest["parts"]]
    assert 0 < sum(truth) < len(truth)  # both kinds of parts on the conveyor
    config = line_yaml(tmp_path, folder, broker.url)
    out = tmp_path / "verdicts.jsonl"

    with Recorder(broker.url, [f"{ROOT_TOPIC}/verdict", f"{ROOT_TOPIC}/status"]) as rec:
        plc = start_plc_sim(broker, len(truth))
        run = inspector("run", "--config", str(config), "--verdicts", str(out), stderr=subprocess.PIPE)
        try:
            _, run_err = run.communicate(timeout=120)  # the folder ends: the run drains and exits by itself
        finally:
            run.kill()
        assert run.returncode == 0, run_err
        report = plc_report(plc)
        assert rec.wait_for(lambda r: any(p["status"] == "offline" for p in r.payloads("status")))

    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["part_id"] for r in records] == list(range(1, len(truth) + 1))
    check_report(report, expected_from(records, truth))
    # The truth rode with each frame into the `verdict` payload, as FolderSource read it from truth.json.
    published = {p["part_id"]: p for p in rec.payloads("verdict")}
    assert {pid: p["truth"] for pid, p in published.items()} == {i + 1: t for i, t in enumerate(truth)}
    assert {pid: p["decision"] for pid, p in published.items()} == {r["part_id"]: r["decision"] for r in records}
    # The verdict file names the defects with the model's class names, not class ids.
    named = {d["class"] for r in records for d in r["defects"]}
    assert named and not any(c.isdigit() for c in named)
    assert [p["status"] for p in rec.payloads("status")] == ["online", "offline"]  # birth, then a clean stop


def test_plc_sim_with_run_stopped_by_sigterm_and_truth_from_folder_names(
    tmp_path: Path, broker: EmbeddedBroker
) -> None:
    """A looping folder without a manifest (truth from the `good/` / `bad/` folder names); the PLC counts 16 parts,
    then SIGTERM stops the inspector, which drains and exits 0."""
    folder = tmp_path / "parts"
    manifest_path = write_folder(folder, 6, seed=5, defect_rate=0.5)
    truth = [bool(p["defective"]) for p in json.loads(manifest_path.read_text())["parts"]]
    manifest_path.unlink()  # only the folder names say which part is bad now
    assert 0 < sum(truth) < len(truth)
    config = line_yaml(tmp_path, folder, broker.url, loop=True)
    out = tmp_path / "verdicts.jsonl"
    parts = 16

    plc = start_plc_sim(broker, parts)
    run = inspector("run", "--config", str(config), "--verdicts", str(out), stderr=subprocess.PIPE)
    try:
        report = plc_report(plc)
        assert run.poll() is None, "a looping folder does not end by itself"
        run.send_signal(signal.SIGTERM)
        _, run_err = run.communicate(timeout=60)
    finally:
        run.kill()
    assert run.returncode == 0, run_err
    assert "SIGTERM" in run_err

    # One verdict per part, none missing. Not necessarily in part order: a part that fails safe because the buffer
    # overflowed is answered by the capture thread, which a loaded machine may schedule after the worker answered
    # the next part.
    records = sorted((json.loads(line) for line in out.read_text().splitlines()), key=lambda r: r["part_id"])
    assert [r["part_id"] for r in records] == list(range(1, len(records) + 1)) and len(records) > parts
    check_report(report, expected_from(records[:parts], truth))
