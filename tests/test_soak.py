"""The soak, 3 minutes of it (issue 20): `bench/soak.py` runs `inspector demo` (embedded Mosquitto, PLC simulator,
dashboard polled, a threshold edit every minute) at 10 parts/s with the 320 px int8 model, a rate the loaded
development box holds, and every part must be accounted for: all decided, all gated with their answer in time (0
missing, 0 late), every verdict on MQTT with no gap, the threshold edits installed, no queue growth, nothing dropped.

RSS is recorded but held only to a generous bound: over 3 minutes the start-up's growth dominates; the 5 % goal is
for the hour-long run (`bench/soak-results.md`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from inspector.sim.plc import PlcSimulator
from tests.mqtt_helpers import WAIT_S, Publisher, mosquitto

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "models" / "deeppcb-v8n-320-int8.onnx"
MINUTES, RATE = 3, 10


@pytest.mark.slow
def test_three_minute_soak_accounts_for_every_part_without_queue_growth(tmp_path: Path) -> None:
    out = tmp_path / "soak.json"
    env = {**os.environ, "YOLO_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "soak.py"), "--minutes", str(MINUTES), "--rate", str(RATE),
         "--model", str(MODEL), "--rss-growth-max", "25", "--json-out", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=MINUTES * 60 + 600,
    )  # fmt: skip
    assert out.exists(), proc.stdout + proc.stderr
    result = json.loads(out.read_text())
    parts = MINUTES * 60 * RATE
    acc = result["accounted"]
    # Every part decided by the demo and gated by its PLC simulator, each with its truth, none without an answer.
    assert (acc["demo_parts"], acc["plc_parts"], acc["truth_known"]) == (parts, parts, parts), acc
    assert (acc["missing_answers"], acc["late_answers"]) == (0, 0), acc
    # Every verdict from the tap's first on arrived, once; the tap listened within a few seconds of the first part.
    assert (
        acc["tap_gaps"] == 0
        and acc["tap_duplicates"] == 0
        and acc["tap_last_id"] - acc["tap_first_id"] + 1 == acc["tap_verdicts"]
    ), acc
    assert acc["tap_verdicts"] >= acc["tap_should_see_at_least"] > parts - 10 * RATE, acc
    assert result["summary"]["drained"] and not result["summary"]["interrupted"]
    # The dashboard user's edits went in (one a minute, the first at once) and the line decided under them.
    edits = result["threshold_edits"]
    assert edits["installed"] >= MINUTES and edits["failed"] == 0, edits
    assert edits["versions_seen_in_verdicts"] >= MINUTES, edits
    assert result["api_errors"] == []
    # No queue growth and nothing lost. Fail-safe parts (a frame dropped from the full queue, a result too late on a
    # busy box) are answered, rejected, and counted among the parts above: the machine's load, not a loss.
    assert result["goals"]["no_queue_growth"], (result["queue_growth"], result["drops"])
    assert (result["drops"]["store_rows_dropped"], result["drops"]["mqtt_overflow"]) == (0, 0), result["drops"]
    assert all(m["rss_mb"] > 50 and m["broker_rss_mb"] > 0 for m in result["minutes"]), result["minutes"]
    assert result["goals"]["rss_growth"], (result["rss_growth_pct"], [m["rss_mb"] for m in result["minutes"]])
    full = [m for m in result["minutes"] if m["seconds"] >= 30]  # the last, partial one may hold no verdict
    assert len(full) >= MINUTES and all(m["p99_ms"] is not None and m["verdicts"] > 0 for m in full), full
    assert result["ok"] and proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def test_plc_simulator_forgets_gated_parts_beyond_its_history(tmp_path: Path) -> None:
    """An hour at 20 parts/s is 72,000 parts: the PLC simulator (in the demo's process) must not keep them all, or
    the soak measures its memory instead of the inspector's. Beyond `history` gated parts it forgets the oldest,
    with their answers and truth; a repeat answer for a forgotten part is late, as it is at a real gate."""
    parts, history = 300, 40
    with mosquitto(tmp_path) as broker:
        sim = PlcSimulator(broker.url, rate=100, gate_ms=300, parts=parts, grace_s=0.3, history=history)
        sim.start()
        plc_side = Publisher(broker.url)
        try:
            for part_id in range(1, parts + 1):
                now = time.time()
                answer = {"part_id": part_id, "seq": part_id, "reject": part_id % 3 == 0, "reason": "", "ts": now}
                plc_side.send("inspector/line1/cam0/reject", json.dumps({**answer, "gate_ts": now + 0.3}))
                plc_side.send(
                    "inspector/line1/cam0/verdict", json.dumps({"part_id": part_id, "truth": part_id % 5 == 0})
                )
            assert sim.wait(WAIT_S)
            plc_side.send("inspector/line1/cam0/reject", json.dumps({"part_id": 1, "seq": 1, "reject": False}))
            deadline = time.monotonic() + WAIT_S
            while sim.report().late_answers == 0 and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            plc_side.close()
            report = sim.stop()
    assert (report.parts, report.missing_answers, report.duplicates, report.late_answers) == (parts, 0, 0, 1)
    assert report.rejected == parts // 3 and report.truth_known == parts and report.defective == parts // 5
    # What it still holds: at most twice its history (it forgets in batches).
    assert len(sim._parts) <= 2 * history and len(sim._seen_answers) <= 2 * history and len(sim._truth) <= 2 * history
