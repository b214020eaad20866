"""`inspector run`, `inspector bench` and `inspector check-config` as an operator runs them (subprocesses,
real YOLOv8n ONNX model)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from inspector import config_cli
from inspector.config import LineConfig, ModelConfig
from inspector.line import build_line, session_plan
from tests.model_factory import make_test_images

ROOT = Path(__file__).resolve().parent.parent


def inspector(*args: str, **kwargs) -> subprocess.Popen[str]:  # type: ignore[no-untyped-def]
    env = {**os.environ, "YOLO_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    env = {k: v for k, v in env.items() if not k.startswith("INSPECTOR_")}
    return subprocess.Popen([sys.executable, "-m", "inspector", *args], cwd=ROOT, env=env, text=True, **kwargs)


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("frames")
    make_test_images(folder, 6)
    return folder


def line_yaml(
    tmp_path: Path, model: Path, images: Path, extra: str = "", loop: bool = True, store: bool = False
) -> Path:
    """A folder-camera line; no MQTT or dashboard (other tests cover them), the store only when asked."""
    path = tmp_path / "line.yaml"
    path.write_text(
        f"""mqtt: {{enabled: false}}
dashboard: {{enabled: false}}
store: {{enabled: {str(store).lower()}, path: {tmp_path / "db.sqlite"}, images_dir: {tmp_path / "images"}}}
camera:
  id: camT
  source: folder
  uri: {images}
  loop: {str(loop).lower()}
  fps: 25
model:
  path: {model}
  conf: 0.05
pipeline:
  gate_ms: 5000
{extra}"""
    )
    return path


# ------------------------------------------------------------------------------------------------ run
def test_run_until_sigterm_drains_and_exits_0(tmp_path: Path, yolov8n_onnx: Path, images: Path) -> None:
    config = line_yaml(tmp_path, yolov8n_onnx, images, store=True)
    out = tmp_path / "verdicts.jsonl"
    proc = inspector("run", "--config", str(config), "--verdicts", str(out), stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if out.exists() and len(out.read_text().splitlines()) >= 8:
            break
        time.sleep(0.1)
    assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    records = [json.loads(line) for line in out.read_text().splitlines()]
    ids = [r["part_id"] for r in records]
    assert sorted(ids) == list(range(1, len(ids) + 1))  # every part seen got exactly one verdict
    assert all(r["camera"] == "camT" and r["decision"] in {"pass", "reject"} for r in records)
    assert any(r["defects"] for r in records)  # the real model found the shapes
    assert "SIGTERM" in stderr and f"decided {len(ids)} in flight 0" in stderr
    with sqlite3.connect(tmp_path / "db.sqlite") as db:  # the config's store got every verdict too
        assert db.execute("SELECT COUNT(*) FROM verdicts").fetchone()[0] == len(ids)


def test_run_with_a_finite_folder_ends_by_itself(tmp_path: Path, yolov8n_onnx: Path, images: Path) -> None:
    config = line_yaml(tmp_path, yolov8n_onnx, images, loop=False)
    out = tmp_path / "verdicts.jsonl"
    proc = inspector("run", "--config", str(config), "--verdicts", str(out), stderr=subprocess.PIPE)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    ids = [json.loads(line)["part_id"] for line in out.read_text().splitlines()]
    # One verdict per image, numbered in order; without a store the numbers start at the start time (part_ids.py).
    assert ids == list(range(ids[0], ids[0] + 6))


def test_run_with_a_bad_config_says_which_field(tmp_path: Path, yolov8n_onnx: Path, images: Path) -> None:
    config = line_yaml(tmp_path, yolov8n_onnx, images, extra="  queue_size: many\n")
    proc = inspector("run", "--config", str(config), stderr=subprocess.PIPE)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 2 and "pipeline.queue_size (line 15)" in stderr


def test_run_with_a_missing_model_fails_to_start(tmp_path: Path, images: Path) -> None:
    config = line_yaml(tmp_path, tmp_path / "gone.onnx", images)
    proc = inspector("run", "--config", str(config), stderr=subprocess.PIPE)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 2 and "cannot start the line" in stderr and "gone.onnx" in stderr


# ------------------------------------------------------------------------------------------------ bench
@pytest.mark.parametrize("mode", ["throughput", "latency"])
def test_bench_prints_fps_and_latency_json(yolov8n_onnx: Path, images: Path, mode: str) -> None:
    proc = inspector(
        "bench",
        str(yolov8n_onnx),
        str(images),
        "--frames",
        "12",
        "--json",
        "--mode",
        mode,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    result = json.loads(stdout.strip().splitlines()[-1])
    assert result["fps"] > 0 and result["mode"] == mode and result["frames"] == 12
    assert result["latency_ms"]["p99"] >= result["latency_ms"]["p50"] > 0
    assert result["inspected"] == 12 and result["failsafe"] == 0
    assert f"mode {mode}" in stdout


def test_bench_with_a_missing_source_fails_cleanly(yolov8n_onnx: Path, tmp_path: Path) -> None:
    proc = inspector("bench", str(yolov8n_onnx), str(tmp_path / "nothing"), stderr=subprocess.PIPE)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 2 and "not found" in stderr


# ------------------------------------------------------------------------------------------------ check-config
def test_check_config_accepts_a_good_file(tmp_path: Path, yolov8n_onnx: Path, images: Path, capsys) -> None:
    assert config_cli.main([str(line_yaml(tmp_path, yolov8n_onnx, images))]) == 0
    assert "OK" in capsys.readouterr().out


def test_check_config_names_field_and_line(tmp_path: Path, capsys) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("camera:\n  source: folder\n  uri: x\npipeline:\n  gate_ms: -5\n  mood: happy\n")
    assert config_cli.main([str(path)]) == 1
    err = capsys.readouterr().err
    assert "pipeline.gate_ms (line 5)" in err and "pipeline.mood (line 6): unknown field" in err


def test_check_config_reports_missing_model_file(tmp_path: Path, capsys) -> None:
    path = tmp_path / "line.yaml"
    path.write_text(f"model:\n  path: {tmp_path / 'gone.onnx'}\n")
    assert config_cli.main([str(path)]) == 1
    assert "model.path: model file not found" in capsys.readouterr().err
    assert config_cli.main([str(path), "--no-files"]) == 0


# ------------------------------------------------------------------------------------------------ line
def test_session_plan_per_mode() -> None:
    auto = ModelConfig()
    assert session_plan("latency", auto, cores=2) == (1, 0)
    assert session_plan("throughput", auto, cores=2) == (2, 1)
    assert session_plan("throughput", auto, cores=8) == (8, 1)
    assert session_plan("throughput", ModelConfig(sessions=2, threads=3), cores=8) == (2, 3)
    assert session_plan("latency", ModelConfig(threads=1), cores=8) == (1, 1)


def test_build_line_loads_one_detector_per_session_and_recipes_lazily(yolov8n_onnx: Path, images: Path) -> None:
    config = LineConfig.model_validate(
        {
            "camera": {"source": "folder", "uri": str(images)},
            "model": {"path": str(yolov8n_onnx), "sessions": 2, "threads": 1},
            "pipeline": {"mode": "throughput"},
            "recipes": {"other": {"model": {"path": str(yolov8n_onnx)}, "thresholds": {"version": 5}}},
        }
    )
    pipeline = build_line(config)
    assert pipeline.n_workers == 2 and pipeline.recipe == "default"
    assert pipeline.names == {0: "rect", 1: "circle"}
    pipeline.set_recipe("other")
    assert pipeline.recipe == "other" and pipeline.thresholds.get().version == 5
    with pytest.raises(KeyError):
        pipeline.set_recipe("missing")
