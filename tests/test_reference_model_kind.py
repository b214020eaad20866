"""The reference model kind (issue 15): ONNX metadata `inspector.input: reference-diff` (written by export, read by
the detector), the clear error when a reference model has no reference or a plain model gets one, and `inspector
detect` with `--reference IMAGE` or DeepPCB-style pairs, where a test with swapped references shows that each image
is checked against its own.

The reference model here is `model_factory.legacy_v5_onnx` marked as one: a fixed function whose objectness is a
cell's mean first network channel, which for a composite is |frame - reference|. So it finds exactly what differs
from the registered reference, as a trained reference model should.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from inspector.cli import main as cli_main
from inspector.detector import ModelError, OnnxDetector
from inspector.export import export_variants
from inspector.reference import INPUT_KEY, REFERENCE_DIFF, dataset_input_kind, paired_template
from tests.model_factory import legacy_v5_onnx, rewrite_metadata

SIZE = 256
DEFECTS = {"0001": (72, 184), "0002": (184, 72)}  # centre of each test image's planted defect
EXTRA_PAD = (176, 176)  # a pad in the second design only (on its template and its test image)


@pytest.fixture(scope="module")
def plain_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return legacy_v5_onnx(tmp_path_factory.mktemp("kind") / "plain.onnx", imgsz=64, batch="batch")


@pytest.fixture(scope="module")
def reference_model(plain_model: Path) -> Path:
    return rewrite_metadata(plain_model, plain_model.with_name("ref.onnx"), {"inspector.input": REFERENCE_DIFF})


def _board() -> np.ndarray:
    """A grey part with traces and pads on a dark substrate: texture to register against, flat areas for defects."""
    rng = np.random.default_rng(4)
    img = np.full((SIZE, SIZE), 30, np.uint8)
    for _ in range(60):
        x, y = (int(v) for v in rng.integers(0, SIZE, 2))
        if rng.random() < 0.5:
            end = (x, int(rng.integers(0, SIZE))) if rng.random() < 0.5 else (int(rng.integers(0, SIZE)), y)
            cv2.line(img, (x, y), end, 120, 3)
        else:
            cv2.circle(img, (x, y), 6, 140, -1, cv2.LINE_AA)
    for x, y in [*DEFECTS.values(), EXTRA_PAD]:  # keep the defects' and the extra pad's places bare
        cv2.rectangle(img, (x - 30, y - 30), (x + 30, y + 30), 30, -1)
    return cv2.GaussianBlur(img, (0, 0), 0.7)


def _square(img: np.ndarray, centre: tuple[int, int], value: int, half: int = 20) -> np.ndarray:
    out = img.copy()
    x, y = centre
    cv2.rectangle(out, (x - half, y - half), (x + half, y + half), value, -1)
    return out


def _shifted(img: np.ndarray, dx: float, dy: float) -> np.ndarray:
    warp = np.float32([[1, 0, dx], [0, 1, dy]])
    return cv2.warpAffine(img, warp, (SIZE, SIZE), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def _write_pairs(folder: Path, swap: bool = False) -> dict[str, Path]:
    """Two DeepPCB-style pairs of two designs (the second has an extra pad); each test image is its design moved a
    little with one planted defect. `swap` exchanges the two templates. Returns stem -> test image path."""
    folder.mkdir(parents=True)
    design = {"0001": _board(), "0002": _square(_board(), EXTRA_PAD, 140, half=10)}
    tests = {}
    for stem, (dx, dy) in (("0001", (2.4, -1.3)), ("0002", (-1.7, 2.2))):
        test = _shifted(_square(design[stem], DEFECTS[stem], 230), dx, dy)
        tests[stem] = folder / f"{stem}_test.png"
        cv2.imwrite(str(tests[stem]), test)
        other = "0002" if stem == "0001" else "0001"
        cv2.imwrite(str(folder / f"{stem}_temp.png"), design[other if swap else stem])
    return tests


def _detect(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, list[dict], str]:
    capsys.readouterr()
    code = cli_main(["detect", *argv, "--json", "--conf", "0.1"])
    out = capsys.readouterr()
    return code, [json.loads(line) for line in out.out.splitlines()], out.err


def _centres(line: dict) -> list[tuple[float, float]]:
    return [((d["xyxy"][0] + d["xyxy"][2]) / 2, (d["xyxy"][1] + d["xyxy"][3]) / 2) for d in line["detections"]]


def _near(point: tuple[float, float], target: tuple[int, int], reach: float = 40.0) -> bool:
    return bool(np.hypot(point[0] - target[0], point[1] - target[1]) <= reach)


# ------------------------------------------------------------------------------------------------ metadata and load
def test_metadata_says_what_the_model_takes_and_load_checks_it(plain_model: Path, reference_model: Path) -> None:
    assert OnnxDetector(plain_model).input_kind == "image"
    reference = OnnxDetector(reference_model, reference=True)
    assert reference.input_kind == REFERENCE_DIFF and reference.describe()["input_kind"] == REFERENCE_DIFF
    with pytest.raises(ModelError, match=r"is a reference model .*needs one"):
        OnnxDetector(reference_model, reference=False)
    with pytest.raises(ModelError, match=r"is a plain model .*cannot use a reference image"):
        OnnxDetector(plain_model, reference=True)
    assert OnnxDetector(plain_model, reference=False).input_kind == "image"
    assert OnnxDetector(reference_model).input_kind == REFERENCE_DIFF  # None: the caller builds the inputs
    odd = rewrite_metadata(plain_model, plain_model.with_name("odd.onnx"), {"inspector.input": "depth"})
    with pytest.raises(ModelError, match=r"inspector.input='depth' is not one of"):
        OnnxDetector(odd)


def test_variants_keep_the_input_kind_and_input_must_agree(reference_model: Path, tmp_path: Path) -> None:
    import onnx

    source = tmp_path / "ref.onnx"
    source.write_bytes(reference_model.read_bytes())
    with pytest.raises(ValueError, match=r"--input image: .* says inspector.input: reference-diff"):
        export_variants(source, fp16=True, input_kind="image")
    described = export_variants(source, fp16=True, input_kind=REFERENCE_DIFF)
    fp16 = Path(described[-1]["path"])
    meta = {p.key: p.value for p in onnx.load(str(fp16)).metadata_props}
    assert meta["inspector.input"] == REFERENCE_DIFF and meta["inspector.precision"] == "fp16"


def test_dataset_input_kind_reads_data_yaml(tmp_path: Path) -> None:
    (tmp_path / "data.yaml").write_text(yaml.safe_dump({"names": {0: "a"}, INPUT_KEY: REFERENCE_DIFF}))
    assert dataset_input_kind(tmp_path) == REFERENCE_DIFF == dataset_input_kind(tmp_path / "data.yaml")
    (tmp_path / "plain.yaml").write_text(yaml.safe_dump({"names": {0: "a"}}))
    assert dataset_input_kind(tmp_path / "plain.yaml") is None
    assert dataset_input_kind(tmp_path / "missing.yaml") is None
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump({INPUT_KEY: "depth"}))
    with pytest.raises(ValueError, match="depth"):
        dataset_input_kind(tmp_path / "bad.yaml")


@pytest.mark.slow
def test_export_of_a_checkpoint_reads_the_training_data_yaml(tmp_path: Path) -> None:
    """A checkpoint trained on reference composites exports as a reference model without being told."""
    pytest.importorskip("ultralytics", reason="needs the train extra")
    os.environ.setdefault("YOLO_OFFLINE", "1")
    import torch
    from ultralytics import YOLO

    data = tmp_path / "data.yaml"
    data.write_text(yaml.safe_dump({"names": {0: "a"}, INPUT_KEY: REFERENCE_DIFF}))
    YOLO("yolov8n.yaml").save(str(tmp_path / "untrained.pt"))
    checkpoint = torch.load(tmp_path / "untrained.pt", weights_only=False)
    checkpoint["train_args"] = {"data": str(data), "imgsz": 64}
    torch.save(checkpoint, tmp_path / "ref.pt")
    export_variants(tmp_path / "ref.pt", tmp_path / "ref.onnx")
    assert OnnxDetector(tmp_path / "ref.onnx").input_kind == REFERENCE_DIFF


# ------------------------------------------------------------------------------------------------ inspector detect
def test_paired_template_follows_deeppcb_names(tmp_path: Path) -> None:
    tests = _write_pairs(tmp_path / "pairs")
    assert paired_template(tests["0001"]) == tmp_path / "pairs" / "0001_temp.png"
    assert paired_template(tmp_path / "pairs" / "0001_temp.png") is None
    (tmp_path / "pairs" / "0003_test.png").write_bytes(tests["0001"].read_bytes())
    assert paired_template(tmp_path / "pairs" / "0003_test.png") is None
    (tmp_path / "pairs" / "0003_temp.jpg").write_bytes(b"")
    assert paired_template(tmp_path / "pairs" / "0003_test.png") == tmp_path / "pairs" / "0003_temp.jpg"


def test_each_test_image_is_checked_against_its_own_template(
    reference_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tests = _write_pairs(tmp_path / "right")
    code, lines, err = _detect([str(reference_model), str(tmp_path / "right")], capsys)
    assert code == 0, err
    assert [line["image"] for line in lines] == [str(tests["0001"]), str(tests["0002"])], "one line a _test image"
    for line, stem in zip(lines, ("0001", "0002"), strict=True):
        assert line["reference"] == str(tmp_path / "right" / f"{stem}_temp.png")
        assert line["registration"]["correlation"] > 0.9
        centres = _centres(line)
        assert centres, f"{stem}: the planted defect is found"
        assert all(_near(c, DEFECTS[stem]) for c in centres), f"{stem}: only the planted defect ({centres})"

    # The same images with the two templates exchanged: the designs differ by one pad, so each test image now
    # also differs from its (wrong) reference there: the reference, not the image alone, decides what is found.
    _write_pairs(tmp_path / "swapped", swap=True)
    code, swapped, err = _detect([str(reference_model), str(tmp_path / "swapped")], capsys)
    assert code == 0, err
    for line in swapped:
        assert any(_near(c, EXTRA_PAD) for c in _centres(line)), f"{line['image']}: the missing/extra pad is found"


def test_one_reference_for_every_image(
    reference_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tests = _write_pairs(tmp_path / "pairs")
    template = tmp_path / "pairs" / "0001_temp.png"
    code, lines, err = _detect([str(reference_model), str(tests["0001"]), "--reference", str(template)], capsys)
    assert code == 0, err
    assert lines[0]["reference"] == str(template)
    assert _centres(lines[0]) and all(_near(c, DEFECTS["0001"]) for c in _centres(lines[0]))
    # An image of another part does not register: an error line, the run goes on, exit status 1.
    other = tmp_path / "other.png"
    cv2.imwrite(str(other), np.random.default_rng(0).integers(0, 255, (SIZE, SIZE), dtype=np.uint8))
    code, lines, _ = _detect(
        [str(reference_model), str(other), str(tests["0001"]), "--reference", str(template)], capsys
    )
    assert code == 1
    assert lines[0]["image"] == str(other) and lines[0]["error"].startswith("unregistered (")
    assert lines[1]["detections"]


def test_a_reference_model_without_reference_and_a_plain_model_with_one_are_refused(
    reference_model: Path, plain_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tests = _write_pairs(tmp_path / "pairs")
    lone = tmp_path / "lone.png"
    lone.write_bytes(tests["0001"].read_bytes())
    code, lines, err = _detect([str(reference_model), str(lone)], capsys)
    assert code == 2 and not lines
    assert "is a reference model" in err and "--reference IMAGE" in err
    code, lines, err = _detect([str(plain_model), str(lone), "--reference", str(tests["0002"])], capsys)
    assert code == 2 and "is a plain model" in err
    # A plain model on a folder of pairs inspects every image on its own, as before.
    code, lines, err = _detect([str(plain_model), str(tmp_path / "pairs")], capsys)
    assert code == 0 and len(lines) == 4 and all("reference" not in line for line in lines)
    # A reference model with pairs and one image that has no template: that image is an error line.
    code, lines, err = _detect([str(reference_model), str(tmp_path / "pairs"), str(lone)], capsys)
    assert code == 1 and lines[-1]["error"].startswith("no reference")
    assert [line["image"] for line in lines[:2]] == [str(tests["0001"]), str(tests["0002"])]
    # A reference without texture cannot be registered against: refused before any image.
    flat = tmp_path / "flat.png"
    cv2.imwrite(str(flat), np.full((SIZE, SIZE), 90, np.uint8))
    code, lines, err = _detect([str(reference_model), str(lone), "--reference", str(flat)], capsys)
    assert code == 2 and "too little texture" in err
