"""`inspector check-config` makes the checks `inspector run` makes before its first part: each recipe's model (and
`model.fallback`) loads, its metadata fits the config and its self-test passes, the thresholds name only the model's
classes, and a folder source holds an image that decodes. A truncated, random or non-YOLO `.onnx` is an error
naming the field and the file. `inspector run` on a folder that can never give a part exits 2 and says why."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from inspector import config_cli
from tests.model_factory import legacy_v5_onnx, make_test_images

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A small working YOLO model and broken files beside it."""
    folder = tmp_path_factory.mktemp("models")
    good = legacy_v5_onnx(folder / "good.onnx", nc=2, imgsz=64, batch="batch")
    data = good.read_bytes()
    truncated = folder / "truncated.onnx"
    truncated.write_bytes(data[: len(data) // 2])
    random = folder / "random.onnx"
    random.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    no_metadata = legacy_v5_onnx(folder / "no-metadata.onnx", with_metadata=False)
    return {
        "good": good,
        "truncated": truncated,
        "random": random,
        "no-metadata": no_metadata,
        "classifier": classifier_onnx(folder / "classifier.onnx"),
    }


def classifier_onnx(path: Path) -> Path:
    """An image classifier (output [1, 3]) with Ultralytics-like metadata but no `task`: not a detector."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("GlobalAveragePool", ["images"], ["pooled"]), helper.make_node("Flatten", ["pooled"], ["y"])],
        "classifier",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 64, 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    helper.set_model_props(model, {"names": "{0: 'a', 1: 'b', 2: 'c'}", "imgsz": "[64, 64]", "stride": "8"})
    onnx.save(model, path)
    return path


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("frames")
    make_test_images(folder, 2)
    return folder


def write_line(tmp_path: Path, model: Path, folder: Path, extra: str = "", fallback: Path | None = None) -> Path:
    path = tmp_path / "line.yaml"
    spare = f', fallback: "{fallback}"' if fallback else ""
    path.write_text(
        f"""camera: {{source: folder, uri: "{folder}"}}
model: {{path: "{model}"{spare}}}
mqtt: {{enabled: false}}
dashboard: {{enabled: false}}
store: {{enabled: false}}
{extra}"""
    )
    return path


def check(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = config_cli.main([str(path)])
    out, err = capsys.readouterr()
    return code, out, err


def test_a_good_line_is_ok(tmp_path: Path, models: dict[str, Path], images: Path, capsys) -> None:
    code, out, err = check(write_line(tmp_path, models["good"], images), capsys)
    assert code == 0, err
    assert "OK" in out and f"model {models['good']}" in out


@pytest.mark.parametrize(
    ("broken", "says"),
    [
        ("truncated", "is not a loadable ONNX model"),
        ("random", "is not a loadable ONNX model"),
        ("no-metadata", "has no class names in its metadata"),
        ("classifier", "a classification model"),
    ],
)
def test_a_broken_model_is_an_error_naming_the_file(
    tmp_path: Path, models: dict[str, Path], images: Path, capsys, broken: str, says: str
) -> None:
    code, out, err = check(write_line(tmp_path, models[broken], images), capsys)
    assert code == 1 and "OK" not in out
    problem = next(line for line in err.splitlines() if line.strip().startswith("model.path"))
    assert str(models[broken]) in problem and says in problem, err
    # --no-files skips what needs the files, as before.
    assert config_cli.main([str(tmp_path / "line.yaml"), "--no-files"]) == 0


def test_fallbacks_recipes_and_threshold_classes_are_checked(
    tmp_path: Path, models: dict[str, Path], images: Path, capsys
) -> None:
    extra = f"""recipes:
  other:
    model: {{path: "{models["random"]}"}}
  third:
    model: {{path: "{models["good"]}", fallback: "{models["truncated"]}"}}
    thresholds: {{classes: {{scratch: {{min_confidence: 0.5}}}}}}
"""
    code, _, err = check(write_line(tmp_path, models["good"], images, extra, fallback=models["classifier"]), capsys)
    assert code == 1
    problems = {line.strip().split(":", 1)[0]: line for line in err.splitlines()[1:]}
    assert set(problems) == {
        "model.fallback",
        "recipes.other.model.path",
        "recipes.third.model.fallback",
        "recipes.third.thresholds.classes",
    }, err
    assert str(models["classifier"]) in problems["model.fallback"]
    assert str(models["random"]) in problems["recipes.other.model.path"]
    assert str(models["truncated"]) in problems["recipes.third.model.fallback"]
    assert "scratch" in problems["recipes.third.thresholds.classes"]


@pytest.mark.parametrize("content", ["empty", "not-images", "unreadable"])
def test_a_folder_that_can_never_give_a_part(tmp_path: Path, models: dict[str, Path], capsys, content: str) -> None:
    folder = tmp_path / "frames"
    folder.mkdir()
    if content == "not-images":
        (folder / "notes.txt").write_text("no images here")
    elif content == "unreadable":
        (folder / "a.png").write_bytes(b"not a png")
        (folder / "b.jpg").write_bytes(b"")
    code, _, err = check(write_line(tmp_path, models["good"], folder), capsys)
    assert code == 1
    assert "camera.uri: the folder source can never produce a part" in err and str(folder) in err, err


def test_run_exits_2_on_a_folder_with_no_images(tmp_path: Path, models: dict[str, Path]) -> None:
    folder = tmp_path / "frames"
    folder.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("INSPECTOR_")}
    done = subprocess.run(
        [sys.executable, "-m", "inspector", "run", "--config", str(write_line(tmp_path, models["good"], folder))],
        cwd=ROOT,
        env={**env, "YOLO_OFFLINE": "1"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert "cannot start the line: camera.uri: the folder source can never produce a part" in done.stderr
    assert "no images" in done.stderr and str(folder) in done.stderr


def test_run_exits_2_on_a_corrupt_model(tmp_path: Path, models: dict[str, Path], images: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INSPECTOR_")}
    done = subprocess.run(
        [sys.executable, "-m", "inspector", "run", "--config", str(write_line(tmp_path, models["truncated"], images))],
        cwd=ROOT,
        env={**env, "YOLO_OFFLINE": "1"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2 and str(models["truncated"]) in done.stderr, done.stderr
