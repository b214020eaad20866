"""`inspector demo --lines N --parts P` as a user runs it (a subprocess, the embedded Mosquitto, one process per line,
a PLC simulator at each gate, the fleet view): it ends with one JSON line per line and a total, every line made its
P parts, and every part was answered at its gate. The smallest shipped model keeps two lines light on two busy
cores; the acceptance run (`--lines 4 --parts 200`, the default model) is recorded in the report of issue 19."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "models" / "deeppcb-v8n-320-int8.onnx"


def test_demo_with_two_lines_answers_every_part_on_every_line() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INSPECTOR_")}
    env.update(YOLO_OFFLINE="1", PYTHONUNBUFFERED="1")
    done = subprocess.run(
        [sys.executable, "-m", "inspector", "demo", "--lines", "2", "--parts", "30", "--rate", "6", "--port", "0",
         "--model", str(MODEL)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert "fleet view http://127.0.0.1:" in done.stderr, done.stderr[-3000:]
    results = [json.loads(line) for line in done.stdout.strip().splitlines()]
    assert [r["line"] for r in results] == ["line1", "line2", "total"], done.stdout
    lines, total = results[:2], results[2]
    assert {r["seed"] for r in lines} == {1, 2} and lines[0]["rate"] != lines[1]["rate"]
    for r in lines:
        assert r["parts"] == 30 and r["plc"]["parts"] == 30, r
        assert r["answered"] + r["missing_answers"] == 30 and r["drained"], r
        assert r["plc"]["truth_known"] == 30 and r["inspector"]["parts"] == 30, r
    for key in ("parts", "rejected", "failsafe", "escapes", "answered", "missing_answers"):
        assert total[key] == sum(r[key] for r in lines), key
    assert total["every_part_answered"], (total, done.stderr[-3000:])
    assert done.returncode == 0, done.stderr[-3000:]
