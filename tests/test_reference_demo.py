"""The synthetic line as one product with a golden reference, from the configuration (`camera.synthetic.board_seed`,
`jitter`), and `inspector demo --reference`: the product's reference in the demo's work folder as the recipe's
`reference.image`, every jittered part registered to it before a reference model (issue 15).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from inspector.config import DEFAULT_MODEL, REFERENCE_MODEL, CameraConfig, SyntheticConfig
from inspector.demo import demo_config
from inspector.reference import REFERENCE_DIFF
from inspector.registration import Registrar
from inspector.sim import SyntheticLine, SyntheticSource
from inspector.sim.jitter import Jitter
from inspector.sources import open_source
from tests.model_factory import legacy_v5_onnx, rewrite_metadata

ROOT = Path(__file__).resolve().parent.parent


def test_synthetic_config_runs_one_product_with_jitter() -> None:
    plain = SyntheticSource(SyntheticConfig(size=128))
    assert plain.line.board_seed is None and plain.line.jitter is None

    config = SyntheticConfig(seed=1, size=160, defect_rate=0.0, board_seed=7, jitter=True)
    source = SyntheticSource(config, limit=3)
    assert source.line.board_seed == 7 and source.line.jitter == Jitter()
    assert "board 7, jitter" in source.description
    reference = SyntheticLine(board_seed=7, size=160).reference()
    registrar = Registrar(reference, model="rigid")
    source.open()
    placements = []
    for index in range(3):
        item = source.read()
        assert item is not None
        result = registrar.register(item[0])
        assert result.ok, f"part {index}: {result}"
        placement = source.line.placement(index)
        assert placement is not None
        placements.append(placement)
    assert len({(p.dx, p.dy) for p in placements}) == 3, "each part lies somewhere else"

    # A camera configured so (as `inspector run` reads it) gives the same line.
    camera = CameraConfig(source="synthetic", synthetic=config)
    opened = open_source(camera)
    assert isinstance(opened, SyntheticSource) and opened.line.board_seed == 7 and opened.line.jitter is not None


def test_demo_config_with_reference_writes_the_products_reference(tmp_path: Path) -> None:
    config = demo_config(4.0, 0, None, tmp_path, 3, 0.3, tmp_path / "m.onnx", reference=True)
    synthetic = config.camera.synthetic
    assert synthetic.board_seed == 3 and synthetic.jitter
    assert config.reference.image == tmp_path / "reference.png" and config.reference.motion == "rigid"
    written = cv2.imread(str(config.reference.image), cv2.IMREAD_COLOR)
    assert np.array_equal(written, SyntheticLine(board_seed=3, size=synthetic.size).reference())
    plain = demo_config(4.0, 0, None, tmp_path, 3, 0.3, tmp_path / "m.onnx")
    assert plain.reference.image is None and plain.camera.synthetic.board_seed is None


@pytest.fixture(scope="module")
def reference_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    plain = legacy_v5_onnx(tmp_path_factory.mktemp("demo") / "plain.onnx", imgsz=64, batch="batch")
    return rewrite_metadata(plain, plain.with_name("ref.onnx"), {"inspector.input": REFERENCE_DIFF})


def _demo(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INSPECTOR_")}
    env.update(YOLO_OFFLINE="1", PYTHONUNBUFFERED="1")
    command = [sys.executable, "-m", "inspector", "demo", "--port", "0", *args]
    return subprocess.run(command, cwd=ROOT, env=env, text=True, capture_output=True, timeout=300)


def test_demo_reference_registers_every_part(reference_model: Path) -> None:
    done = _demo("--reference", "--parts", "12", "--rate", "3", "--model", str(reference_model))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "board 0, jitter" in done.stderr
    assert "unregistered" not in done.stderr, "every jittered part registers to the product's reference"
    assert '"parts": 12' in done.stdout.splitlines()[-1]

    # The shipped reference-free model cannot take a reference: a clear error, not a running line.
    refused = _demo("--reference", "--parts", "2", "--model", str(DEFAULT_MODEL))
    assert refused.returncode == 2 and "is a plain model" in refused.stderr
    # Nor a reference model go without one.
    refused = _demo("--reference-free", "--parts", "2", "--model", str(reference_model))
    assert refused.returncode == 2 and "reference" in refused.stderr, refused.stderr[-2000:]


def test_the_demo_runs_the_golden_reference_model_by_default() -> None:
    """No flags: one board with jitter, registered to its golden reference, the shipped reference model; and
    `--reference-free` runs the reference-free model on boards that all differ."""
    done = _demo("--parts", "6", "--rate", "3")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "board 0, jitter" in done.stderr and f"model {REFERENCE_MODEL.name}" in done.stderr, done.stderr[-2000:]
    assert "unregistered" not in done.stderr
    summary = json.loads(done.stdout.splitlines()[-1])
    assert summary["parts"] == 6 and summary["failsafe"] == 0 and summary["plc"]["missing_answers"] == 0

    free = _demo("--reference-free", "--parts", "4", "--rate", "3")
    assert free.returncode == 0, free.stderr[-3000:]
    assert f"model {DEFAULT_MODEL.name}" in free.stderr and "jitter" not in free.stderr, free.stderr[-2000:]
