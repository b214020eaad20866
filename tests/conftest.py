"""Shared pytest fixtures: small real ONNX detection models and generated test images.

Session-scoped model fixtures (each returns a `Path` to an `.onnx` file, built once and cached on disk under
`.cache/test-models/<ultralytics/torch version key>/`, see `tests/model_factory.py`):

- `tiny_model_dir`: the cache folder itself.
- `yolov8n_onnx`: YOLOv8n, imgsz 320, dynamic batch (and H/W) axes, output `[B, 6, 2100]`, 2 classes
  `{0: "rect", 1: "circle"}`, trained 40 short epochs on generated shapes: finds bright rectangles and circles on
  dark backgrounds, but with low confidences (max ~0.5). Measured on the 24 `test_images`: 77 boxes above conf 0.1,
  10 above 0.25; use conf 0.1 (or lower) when a test needs boxes.
- `yolo11n_onnx`: the same for YOLO11n (more confident: 184 boxes above 0.1, 74 above 0.25, max ~0.8).
- `yolo26n_e2e_onnx`: YOLO26n with its NMS-free head, static batch 1, output `[1, 300, 6]` (x1, y1, x2, y2,
  score, class) in input pixels (326 boxes above 0.1, 113 above 0.25, max ~0.65).
- `yolov5_legacy_onnx`: a tiny `onnx.helper` graph with YOLOv5's legacy layout `[B, N, 5 + nc]` (imgsz 64, 2 classes,
  metadata present); see `model_factory.legacy_v5_onnx` for what it computes.
- `test_images`: a folder of 24 PNG images of mixed sizes and aspect ratios (square, 4:3, 16:9, portrait, odd,
  grey and colour) with the same kind of shapes; returns the sorted list of paths.

Building a model needs the `train` extra (ultralytics + torch) and takes 1-2 minutes per model on 2 busy CPU cores the
first time (all three: ~4.5 min); later sessions load the cached file in milliseconds. Concurrent test processes
wait on a file lock instead of building twice. The environment variable `YOLO_OFFLINE=1` is set
here so that Ultralytics never tries the network.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.model_factory import build_model, cache_dir, legacy_v5_onnx, make_test_images

os.environ.setdefault("YOLO_OFFLINE", "1")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Give each of schemathesis' per-operation tests its own node id (`...[GET /api/stats]`): schemathesis gives
    them all the test function's, and pytest-xdist, which sends tests to workers by node id, would run one of them."""
    for item in items:
        if isinstance(item, pytest.Function) and "[" in item.name and not item.nodeid.endswith("]"):
            # pytest 9 builds node ids from a parametrize callspec, which schemathesis' items lack.
            item._id = item.id.with_params(item.name[len(item.originalname) + 1 : -1])


@pytest.fixture(scope="session")
def tiny_model_dir() -> Path:
    """The on-disk cache of test models, keyed by the Ultralytics and torch versions."""
    return cache_dir()


@pytest.fixture(scope="session")
def yolov8n_onnx(tiny_model_dir: Path) -> Path:
    """YOLOv8n ONNX (imgsz 320, dynamic batch, 2 classes), trained a few epochs on generated shapes."""
    return build_model("yolov8n", tiny_model_dir)


@pytest.fixture(scope="session")
def yolo11n_onnx(tiny_model_dir: Path) -> Path:
    """YOLO11n ONNX (imgsz 320, dynamic batch, 2 classes), trained a few epochs on generated shapes."""
    return build_model("yolo11n", tiny_model_dir)


@pytest.fixture(scope="session")
def yolo26n_e2e_onnx(tiny_model_dir: Path) -> Path:
    """YOLO26n end-to-end ONNX (imgsz 320, batch 1, output [1, 300, 6]), trained a few epochs."""
    return build_model("yolo26n_e2e", tiny_model_dir)


@pytest.fixture(scope="session")
def yolov5_legacy_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny graph with YOLOv5's legacy output `[B, N, 7]` (imgsz 64, dynamic batch, metadata present)."""
    return legacy_v5_onnx(tmp_path_factory.mktemp("v5") / "yolov5_legacy.onnx", batch="batch")


@pytest.fixture(scope="session")
def test_images(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """24 PNG images of mixed sizes / aspect ratios, a third of them greyscale (sorted paths)."""
    return make_test_images(tmp_path_factory.mktemp("images"), 24)
