"""`inspector detect MODEL PATH... [--conf] [--iou] [--json]`: output formats, per-image errors, exit codes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from inspector import detect_cli
from inspector.cli import main as cli_main

REPO = Path(__file__).resolve().parent.parent


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    capsys.readouterr()  # drop what came before (a fixture that just trained its model prints progress)
    code = cli_main(["detect", *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_json_lines_for_files_and_folders(
    yolo11n_onnx: Path, test_images: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _run([str(yolo11n_onnx), str(test_images[0].parent), "--json", "--conf", "0.1"], capsys)
    assert code == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert [Path(x["image"]) for x in lines] == test_images
    boxes = [d for x in lines for d in x["detections"]]
    assert boxes, "the test model should find shapes at conf 0.1"
    for d in boxes:
        assert set(d) == {"class_id", "class_name", "confidence", "xyxy"}
        assert d["class_name"] == {0: "rect", 1: "circle"}[d["class_id"]]
        assert 0.1 < d["confidence"] <= 1 and len(d["xyxy"]) == 4
    # Boxes are in original-image pixels: inside each image.
    for x in lines:
        h, w = cv2.imread(x["image"]).shape[:2]
        for d in x["detections"]:
            x1, y1, x2, y2 = d["xyxy"]
            assert min(x1, x2) >= 0 and max(x1, x2) <= w and min(y1, y2) >= 0 and max(y1, y2) <= h


def test_conf_and_iou_flags(yolo11n_onnx: Path, test_images: list[Path], capsys: pytest.CaptureFixture[str]) -> None:
    def count(*flags: str) -> int:
        code, out, _ = _run([str(yolo11n_onnx), *map(str, test_images[:6]), "--json", *flags], capsys)
        assert code == 0
        return sum(len(json.loads(line)["detections"]) for line in out.splitlines())

    low, high = count("--conf", "0.05"), count("--conf", "0.5")
    assert low > high
    assert count("--conf", "0.05", "--iou", "0.2") < low
    assert count("--conf", "0.05", "--max-det", "1") <= 6


def test_batch_flag_gives_the_same_boxes(
    yolov8n_onnx: Path, test_images: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    args = [str(yolov8n_onnx), *map(str, test_images[:9]), "--json", "--conf", "0.1"]
    _, one, _ = _run(args, capsys)
    code, four, _ = _run([*args, "--batch", "4"], capsys)
    assert code == 0
    for a, b in zip(one.splitlines(), four.splitlines(), strict=True):
        da, db = json.loads(a), json.loads(b)
        assert da["image"] == db["image"]
        assert [d["class_id"] for d in da["detections"]] == [d["class_id"] for d in db["detections"]]
        for x, y in zip(da["detections"], db["detections"], strict=True):
            np.testing.assert_allclose(x["xyxy"], y["xyxy"], atol=0.05)


def test_bad_paths_are_reported_and_the_run_goes_on(
    yolov8n_onnx: Path, test_images: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG not really")
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    no_images = tmp_path / "no_images"
    no_images.mkdir()
    (no_images / "notes.txt").write_text("hello")
    paths = [str(test_images[0]), str(tmp_path / "missing.png"), str(broken), str(empty), str(no_images),
             str(test_images[1])]  # fmt: skip
    code, out, err = _run([str(yolov8n_onnx), *paths, "--json"], capsys)
    assert code == 1
    lines = [json.loads(line) for line in out.splitlines()]
    assert [x["image"] for x in lines] == paths  # one line per path, in order
    assert "detections" in lines[0] and "detections" in lines[-1]
    assert lines[1]["error"] == "no such file or folder"
    assert lines[2]["error"] == "not a readable image" and lines[3]["error"] == "not a readable image"
    assert lines[4]["error"] == "folder holds no images"
    assert "4 images failed" in err


def test_readable_table(yolo11n_onnx: Path, test_images: list[Path], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run([str(yolo11n_onnx), str(test_images[3]), "/nonexistent.png", "--conf", "0.1"], capsys)
    assert code == 1
    lines = out.splitlines()
    h, w = cv2.imread(str(test_images[3])).shape[:2]
    assert lines[0].startswith(f"{test_images[3]}  ({w}x{h})  ") and "detection" in lines[0]
    assert lines[1].split() == ["id", "class", "conf", "x1", "y1", "x2", "y2"]
    assert lines[2].split()[1] in {"rect", "circle"}
    assert lines[-1] == "/nonexistent.png  ERROR: no such file or folder"


def test_bad_model_and_bad_flags(tmp_path: Path, test_images: list[Path], capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run([str(tmp_path / "missing.onnx"), str(test_images[0])], capsys)
    assert code == 2 and "model file not found" in err and "Traceback" not in err
    code, _, err = _run([str(test_images[0]), str(test_images[0])], capsys)
    assert code == 2 and "not a loadable ONNX model" in err
    code, _, err = _run([str(tmp_path / "m.onnx"), str(test_images[0]), "--conf", "2"], capsys)
    assert code == 2 and "--conf" in err
    with pytest.raises(SystemExit):
        detect_cli.main([])


def test_unicode_file_names_and_grey_16bit(
    yolov8n_onnx: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Images are read like Ultralytics does: by bytes (any file name), grey / 16-bit converted to 8-bit BGR."""
    img = np.zeros((120, 200), np.uint16)
    img[30:90, 50:150] = 60000
    path = tmp_path / "ünïcode bild.png"
    cv2.imencode(".png", img)[1].tofile(str(path))
    code, out, _ = _run([str(yolov8n_onnx), str(path), "--json"], capsys)
    assert code == 0 and json.loads(out)["image"] == str(path)


@pytest.mark.skipif(shutil.which("inspector") is None and not (REPO / ".venv/bin/inspector").exists(),
                    reason="console script not installed")  # fmt: skip
def test_console_script(yolov8n_onnx: Path, test_images: list[Path]) -> None:
    """The installed `inspector` command, in a fresh process (python -m inspector is the same entry point)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    r = subprocess.run(
        [sys.executable, "-m", "inspector", "detect", str(yolov8n_onnx), str(test_images[0]), "--json"],
        capture_output=True, text=True, timeout=120, env=env, cwd=REPO,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["image"] == str(test_images[0])
