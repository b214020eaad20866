"""`inspector eval`, `calibrate` and `bench` take references as `detect` does (issue 15, `inspector.reference_inputs`):
NAME_test/NAME_temp pairs, one `--reference IMAGE`, or the composites of a reference-diff data.yaml as they are; an
image that does not register counts as a fail-safe reject; bench registers in the pipeline (the `register` stage).

The reference model is `test_reference_model_kind`'s: a fixed function that finds exactly what differs from the
registered reference. Two designs (the second has an extra pad): 0001 is design A with a planted defect (labelled),
0002 design B without one (a good part). With each image against its own template nothing but the defect is found;
with the templates swapped, the good part differs from its (wrong) reference at the pad and is rejected.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from inspector.cli import main as cli_main
from inspector.reference import INPUT_KEY, REFERENCE_DIFF, reference_composite
from inspector.registration import Registrar
from tests.model_factory import legacy_v5_onnx, rewrite_metadata
from tests.test_reference_model_kind import DEFECTS, EXTRA_PAD, SIZE, _board, _shifted, _square

NAMES = "c0\nc1\n"  # the factory model's class names


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(plain model, reference model)."""
    plain = legacy_v5_onnx(tmp_path_factory.mktemp("tools") / "plain.onnx", imgsz=64, batch="batch")
    return plain, rewrite_metadata(plain, plain.with_name("ref.onnx"), {"inspector.input": REFERENCE_DIFF})


def _designs() -> dict[str, np.ndarray]:
    return {"A": _board(), "B": _square(_board(), EXTRA_PAD, 140, half=10)}


def _parts() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """stem -> (test image, its own template): 0001 design A with a defect, 0002 design B without one."""
    design = _designs()
    return {
        "0001": (_shifted(_square(design["A"], DEFECTS["0001"], 230), 2.4, -1.3), design["A"]),
        "0002": (_shifted(design["B"], -1.7, 2.2), design["B"]),
    }


def _label(x: int, y: int, half: int = 20) -> str:
    return f"0 {x / SIZE:.6f} {y / SIZE:.6f} {2 * half / SIZE:.6f} {2 * half / SIZE:.6f}\n"


def _pairs_dataset(root: Path, swap: bool = False) -> Path:
    """A YOLO folder: images/val holds the pairs, labels/val the defect's box, templates/val 0002's template (a
    `_temp` with no reference of its own: compared with itself). Returns the folder."""
    (root / "images" / "val").mkdir(parents=True)
    (root / "labels" / "val").mkdir(parents=True)
    (root / "templates" / "val").mkdir(parents=True)
    (root / "names.txt").write_text(NAMES)
    parts = _parts()
    for stem, (test, template) in parts.items():
        cv2.imwrite(str(root / "images" / "val" / f"{stem}_test.png"), test)
        other = parts["0002" if stem == "0001" else "0001"][1]
        cv2.imwrite(str(root / "images" / "val" / f"{stem}_temp.png"), other if swap else template)
    (root / "labels" / "val" / "0001_test.txt").write_text(_label(*DEFECTS["0001"]))
    cv2.imwrite(str(root / "templates" / "val" / "0002_temp.png"), parts["0002"][1])
    return root


def _composites_dataset(root: Path) -> Path:
    """The same parts as `import-deeppcb --reference` writes them: composites, data.yaml with inspector_input."""
    for sub in ("images/val", "labels/val", "templates/val"):
        (root / sub).mkdir(parents=True)
    for stem, (test, template) in _parts().items():
        registered = Registrar(template, model="affine").register(test)
        assert registered.ok
        cv2.imwrite(str(root / "images" / "val" / f"{stem}.png"), reference_composite(test, registered.reference))
    (root / "labels" / "val" / "0001.txt").write_text(_label(*DEFECTS["0001"]))
    template = _parts()["0002"][1]
    cv2.imwrite(str(root / "templates" / "val" / "0002.png"), reference_composite(template, template))
    spec = {"path": str(root), "val": "images/val", "templates_val": "templates/val", "names": {0: "c0", 1: "c1"}}
    (root / "data.yaml").write_text(yaml.safe_dump({**spec, INPUT_KEY: REFERENCE_DIFF}))
    return root / "data.yaml"


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    capsys.readouterr()
    code = cli_main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


def _eval(model: Path, data: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> dict:
    """The report at thresholds 0.1 (the factory model's score for the small pad is below the default 0.25)."""
    thresholds = data.parent / "thresholds-0.1.yaml"
    thresholds.write_text(yaml.safe_dump({"default": {"min_confidence": 0.1}}))
    argv = ["eval", str(model), str(data), "--json", "--conf", "0.05", "--thresholds", str(thresholds), *extra]
    code, out, err = _run(argv, capsys)
    assert code == 0, err
    return json.loads(out)


# ------------------------------------------------------------------------------------------------------------- eval
def test_eval_checks_each_test_image_against_its_own_template(
    models: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, ref_model = models
    right = _eval(ref_model, _pairs_dataset(tmp_path / "right"), capsys)
    assert right["images"] == 2, "a pair's template is its test image's reference, not a part"
    assert right["reference"]["input"] == "pairs"
    assert right["reference"]["registered"] == 3 and right["reference"]["unregistered"] == 0
    assert right["reference"]["register_ms"] > 0
    ins = right["inspection"]
    assert (ins["defective_images"], ins["escapes"]) == (1, 0), "the planted defect rejects 0001"
    assert (ins["good_images"], ins["false_rejects"]) == (2, 0), "0002 and its template pass against themselves"

    swapped = _eval(ref_model, _pairs_dataset(tmp_path / "swapped", swap=True), capsys)
    assert swapped["inspection"]["escapes"] == 0
    assert swapped["inspection"]["false_rejects"] == 1, "0002 against design A's template differs at the pad"


def test_eval_on_composites_and_with_one_reference(
    models: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plain, ref_model = models
    composites = _composites_dataset(tmp_path / "composites")
    report = _eval(ref_model, composites, capsys)
    assert report["reference"]["input"] == "composites"
    assert report["inspection"]["escapes"] == 0 and report["inspection"]["false_rejects"] == 0
    assert report["inspection"]["defective_images"] == 1 and report["inspection"]["good_images"] == 2

    # A plain model on composites, or a reference model with no reference at all: clear errors, no traceback.
    code, _, err = _run(["eval", str(plain), str(composites)], capsys)
    assert code == 1 and "reference-diff composites" in err and "plain model" in err and "Traceback" not in err
    code, _, err = _run(["eval", str(ref_model), str(composites), "--reference", str(composites)], capsys)
    assert code == 1 and "composites already" in err
    bare = tmp_path / "bare"
    (bare / "images" / "val").mkdir(parents=True)
    (bare / "names.txt").write_text(NAMES)
    cv2.imwrite(str(bare / "images" / "val" / "0001.png"), _parts()["0001"][0])
    code, _, err = _run(["eval", str(ref_model), str(bare)], capsys)
    assert code == 1 and "is a reference model" in err and "needs one" in err

    # One reference for every image; an image that does not register (a blank frame) is a fail-safe reject.
    (bare / "labels" / "val").mkdir(parents=True)
    (bare / "labels" / "val" / "0001.txt").write_text(_label(*DEFECTS["0001"]))
    cv2.imwrite(str(bare / "images" / "val" / "0003.png"), np.full((SIZE, SIZE, 3), 90, np.uint8))
    (bare / "labels" / "val" / "0003.txt").write_text(_label(128, 128))
    reference = tmp_path / "design-a.png"
    cv2.imwrite(str(reference), _designs()["A"])
    report = _eval(ref_model, bare, capsys, "--reference", str(reference), "--motion", "rigid")
    assert report["reference"]["input"] == str(reference)
    assert report["reference"]["unregistered"] == 1
    assert report["reference"]["unregistered_images"] == [str(bare / "images" / "val" / "0003.png")]
    assert report["inspection"]["defective_images"] == 2 and report["inspection"]["escapes"] == 0
    code, _, err = _run(["eval", str(plain), str(bare), "--reference", str(reference)], capsys)
    assert code == 1 and "is a plain model" in err


def test_calibrate_with_pairs(models: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, ref_model = models
    data = _pairs_dataset(tmp_path / "pairs")
    out = tmp_path / "cal" / "ref.yaml"
    code, stdout, err = _run(
        ["calibrate", str(ref_model), str(data), "--max-escape", "0", "--floor", "0.1", "-o", str(out)], capsys
    )
    assert code == 0, err
    summary = json.loads(stdout.splitlines()[-1])
    assert summary["reference"]["input"] == "pairs" and summary["reference"]["registered"] == 3
    assert (summary["defective_images"], summary["good_images"]) == (1, 2)
    assert summary["escape_rate"] == 0.0 and summary["false_reject_rate"] == 0.0
    assert out.is_file()


# ------------------------------------------------------------------------------------------------------------ bench
def _bench(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, dict | None, str]:
    code, out, err = _run(["bench", *argv, "--frames", "12", "--warmup", "2", "--json"], capsys)
    lines = out.splitlines()
    return code, (json.loads(lines[-1]) if code == 0 else None), out + err


def test_bench_registers_in_the_pipeline(
    models: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plain, ref_model = models
    pairs = _pairs_dataset(tmp_path / "pairs") / "images" / "val"
    code, result, text = _bench([str(ref_model), str(pairs)], capsys)
    assert code == 0, text
    assert result is not None and result["input"] == "pairs" and result["distinct_frames"] == 2
    assert result["inspected"] == 12 and result["unregistered"] == 0
    assert result["stage_ms"]["register"]["p50"] > 0, "registration is timed as its own stage"
    assert "register" in text.split("stage p50 (ms):")[1].splitlines()[0]
    assert result["left_out"] == 0
    # the process's CPU time a frame is reported, and printed beside the fps
    assert result["cpu_ms_per_frame"] > 0 and "CPU" in text

    # A pair whose template is blank (one of DeepPCB's is all white) is left out and said so, not the whole run.
    shutil.copy(pairs / "0001_test.png", pairs / "0009_test.png")
    cv2.imwrite(str(pairs / "0009_temp.png"), np.full((SIZE, SIZE, 3), 255, np.uint8))
    code, result, text = _bench([str(ref_model), str(pairs)], capsys)
    assert code == 0, text
    assert result is not None and result["distinct_frames"] == 2 and result["left_out"] == 1
    assert "left out: 1 pair(s) whose reference cannot be registered against" in text and "0009_test" in text

    # One --reference for every frame: a part of the design registers, a blank frame does not and fails safe.
    frames = tmp_path / "frames"
    frames.mkdir()
    shutil.copy(pairs / "0001_test.png", frames / "a.png")
    cv2.imwrite(str(frames / "b.png"), np.full((SIZE, SIZE, 3), 90, np.uint8))
    reference = tmp_path / "design-a.png"
    cv2.imwrite(str(reference), _designs()["A"])
    code, result, text = _bench([str(ref_model), str(frames), "--reference", str(reference)], capsys)
    assert code == 0, text
    assert result is not None and result["input"] == str(reference)
    assert result["unregistered"] == 6 and result["inspected"] == 6 and result["failsafe"] == 6

    # Composites as they are: no registration.
    composites = _composites_dataset(tmp_path / "composites")
    code, result, text = _bench([str(ref_model), str(composites)], capsys)
    assert code == 0, text
    assert result is not None and result["input"] == "composites" and result["inspected"] == 12
    assert result["stage_ms"]["register"]["p50"] == 0.0
    assert "register" not in text.split("stage p50 (ms):")[1].splitlines()[0]

    # A plain model with a reference, or a reference model without one: exit 2 with the reason.
    code, _, text = _bench([str(plain), str(frames), "--reference", str(reference)], capsys)
    assert code == 2 and "is a plain model" in text
    code, _, text = _bench([str(ref_model), str(frames)], capsys)
    assert code == 2 and "is a reference model" in text
