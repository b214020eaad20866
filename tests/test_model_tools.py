"""The model tools end to end, on data the test makes: DeepPCB import, 1-epoch training, export (fp32, int8, fp16),
evaluation through our runtime, and calibration of thresholds.

Everything is tiny (12 image pairs of 128x128, training and export at imgsz 64) so that the module runs in about a
minute on 2 busy cores. One module-scoped fixture builds the chain once; the tests check each stage's outputs. The
model after one epoch detects little; the checks are about well-formed, mutually consistent outputs.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from inspector.cli import main as cli
from inspector.selftest import SelfTestRecord, sidecar_path

pytest.importorskip("ultralytics", reason="needs the train extra")
pytestmark = pytest.mark.slow
os.environ.setdefault("YOLO_OFFLINE", "1")

N_PAIRS = 12
SIZE = 128


def _board(rng: np.random.Generator) -> np.ndarray:
    """A binarised PCB-like template: white background, black traces and pads (DeepPCB's look)."""
    img = np.full((SIZE, SIZE, 3), 255, np.uint8)
    for _ in range(4):
        y = int(rng.integers(10, SIZE - 10))
        cv2.line(img, (0, y), (SIZE - 1, y), (0, 0, 0), int(rng.integers(3, 6)))
    for _ in range(3):
        cx, cy = (int(v) for v in rng.integers(15, SIZE - 15, 2))
        cv2.circle(img, (cx, cy), 6, (0, 0, 0), -1)
    return img


def make_deeppcb(root: Path, seed: int = 0) -> list[tuple[str, list[tuple[int, int, int, int, int]]]]:
    """Write N_PAIRS pairs in DeepPCB's layout under `root`; return (stem, boxes) with boxes `x1 y1 x2 y2 type`.

    Defects: type 5 "copper" (a black blob on white) and type 6 "pin-hole" (a white dot in a black pad).
    """
    rng = np.random.default_rng(seed)
    group = root / "group90000"
    (group / "90000").mkdir(parents=True)
    (group / "90000_not").mkdir()
    index, written = [], []
    for i in range(N_PAIRS):
        stem = f"90000{i:03d}"
        template = _board(rng)
        test = template.copy()
        boxes = []
        for _ in range(int(rng.integers(1, 4))):
            x, y = (int(v) for v in rng.integers(12, SIZE - 12, 2))
            if rng.random() < 0.5:
                cv2.circle(test, (x, y), 5, (0, 0, 0), -1)
                boxes.append((x - 6, y - 6, x + 6, y + 6, 5))
            else:
                cv2.rectangle(test, (x - 7, y - 7), (x + 7, y + 7), (0, 0, 0), -1)
                cv2.circle(test, (x, y), 3, (255, 255, 255), -1)
                boxes.append((x - 8, y - 8, x + 8, y + 8, 6))
        cv2.imwrite(str(group / "90000" / f"{stem}_test.jpg"), test)
        cv2.imwrite(str(group / "90000" / f"{stem}_temp.jpg"), template)
        sep = "," if i == 0 else " "  # DeepPCB has a few comma-separated annotation files
        lines = [sep.join(str(v) for v in b) for b in boxes]
        (group / "90000_not" / f"{stem}.txt").write_text("\n".join(lines) + "\n")
        index.append(f"group90000/90000/{stem}.jpg group90000/90000_not/{stem}.txt")
        written.append((stem, boxes))
    (root / "trainval.txt").write_text("\n".join(index) + "\n")
    return written


@dataclass
class Chain:
    root: Path
    pairs: list[tuple[str, list[tuple[int, int, int, int, int]]]]
    data: Path
    best: Path
    fp32: Path
    int8: Path
    fp16: Path
    export_report: list[dict]


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Chain:
    root = tmp_path_factory.mktemp("model_tools")
    pairs = make_deeppcb(root / "deeppcb")
    assert cli(["dataset", "import-deeppcb", str(root / "deeppcb"), str(root / "yolo"), "--val-fraction", "0.25"]) == 0
    data = root / "yolo" / "data.yaml"
    rc = cli(
        [
            "train",
            "--data",
            str(data),
            "--model",
            "yolov8n.yaml",
            "--imgsz",
            "64",
            "--epochs",
            "1",
            "--batch",
            "4",
            "--workers",
            "0",
            "--project",
            str(root / "runs"),
            "--name",
            "tiny",
            "--set",
            "cache=false",
        ]
    )
    assert rc == 0
    best = root / "runs" / "tiny" / "weights" / "best.pt"
    fp32 = root / "models" / "tiny.onnx"
    report_file = root / "export.json"
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = cli(
            [
                "export",
                str(best),
                "-o",
                str(fp32),
                "--int8",
                "--calib",
                str(data),
                "--calib-images",
                "6",
                "--fp16",
            ]
        )
    assert rc == 0, buf.getvalue()[-2000:]
    text = buf.getvalue()
    lines = text.splitlines()
    start = len(lines) - 1 - lines[::-1].index("[")  # Ultralytics may log first; our JSON list comes last
    report = json.loads("\n".join(lines[start:]))
    report_file.write_text(json.dumps(report))
    return Chain(
        root, pairs, data, best, fp32, fp32.with_name("tiny-int8.onnx"), fp32.with_name("tiny-fp16.onnx"), report
    )


def test_import_deeppcb_writes_yolo_layout(chain: Chain) -> None:
    spec = yaml.safe_load(chain.data.read_text())
    assert spec["names"][4] == "copper" and spec["names"][5] == "pin-hole"
    base = Path(spec["path"])
    val = sorted((base / spec["val"]).glob("*.jpg"))
    train = sorted((base / spec["train"]).glob("*.jpg"))
    assert len(val) == 3 and len(train) == N_PAIRS - 3
    assert {p.stem for p in val}.isdisjoint({p.stem for p in train})
    assert len(list((base / spec["templates_val"]).glob("*.jpg"))) == 3
    # One label checked by hand: DeepPCB type k -> class k-1, box centre and size normalised by 128.
    stem, boxes = chain.pairs[0]
    split = "val" if (base / "labels" / "val" / f"{stem}.txt").exists() else "train"
    rows = np.loadtxt(base / "labels" / split / f"{stem}.txt", ndmin=2)
    x1, y1, x2, y2, kind = boxes[0]
    np.testing.assert_allclose(
        rows[0], [kind - 1, (x1 + x2) / 2 / SIZE, (y1 + y2) / 2 / SIZE, (x2 - x1) / SIZE, (y2 - y1) / SIZE], atol=1e-5
    )


def test_mix_lists_base_backgrounds_and_added_sets_and_trains(chain: Chain, capsys: pytest.CaptureFixture[str]) -> None:
    """`dataset mix`: base training images + N unlabelled templates + another set's training images, validated on
    the base's held-out split; Ultralytics trains on the list; bad requests are one-line errors."""
    from inspector.sim import write_dataset

    write_dataset(chain.root / "syn", n=4, val_fraction=0.5, size=SIZE)
    out = chain.root / "mix"
    mix = ["dataset", "mix", str(out), "--base", str(chain.data)]
    assert cli([*mix, "--backgrounds", "2", "--add", str(chain.root / "syn" / "data.yaml")]) == 0
    counts = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    rows = (out / "train.txt").read_text().split()
    base = yaml.safe_load(chain.data.read_text())
    base_train = sorted((Path(base["path"]) / base["train"]).glob("*.jpg"))
    assert rows[: len(base_train)] == [str(p.resolve()) for p in base_train]
    templates = [r for r in rows if "/templates/" in r]
    assert len(templates) == 2 and all(not Path(t).with_suffix(".txt").exists() for t in templates)
    assert sum("syn_" in r for r in rows) == 2
    assert counts == {"out": str(out), "base": N_PAIRS - 3, "backgrounds": 2, "added": 2, "train": N_PAIRS - 3 + 4}
    spec = yaml.safe_load((out / "data.yaml").read_text())
    base_val = sorted((Path(base["path"]) / base["val"]).glob("*.jpg"))
    assert (out / spec["val"]).read_text().split() == [str(p.resolve()) for p in base_val]
    assert spec["names"] == base["names"]
    # The same seed picks the same templates.
    assert cli(["dataset", "mix", str(chain.root / "mix2"), "--base", str(chain.data), "--backgrounds", "2"]) == 0
    assert [r for r in (chain.root / "mix2" / "train.txt").read_text().split() if "/templates/" in r] == templates
    capsys.readouterr()

    train = ["train", "--data", str(out / "data.yaml"), "--imgsz", "64", "--epochs", "1", "--batch", "4"]
    rc = cli([*train, "--workers", "0", "--project", str(chain.root / "runs"), "--name", "mix", "--set", "cache=false"])
    assert rc == 0 and (chain.root / "runs" / "mix" / "weights" / "last.pt").exists()
    # Ultralytics' label cache of the mix: 13 images, the 2 templates without a label file (its backgrounds).
    caches = [np.load(str(c), allow_pickle=True).item()["results"] for c in chain.root.rglob("train.cache")]
    assert any(n == 13 and missing == 2 for _found, missing, _empty, _corrupt, n in caches), caches

    assert cli([*mix, "--backgrounds", "999"]) == 1
    assert "training templates" in capsys.readouterr().err
    other = chain.root / "other.yaml"
    syn_spec = yaml.safe_load((chain.root / "syn" / "data.yaml").read_text())
    # Same number of classes, other names.
    other.write_text(yaml.safe_dump({**syn_spec, "names": {i: f"class{i}" for i in range(6)}}))
    assert cli([*mix, "--add", str(other)]) == 1
    assert "class names" in capsys.readouterr().err


def test_train_one_epoch_writes_weights(chain: Chain) -> None:
    assert chain.best.exists() and chain.best.stat().st_size > 1_000_000


def test_train_from_earlier_weights_at_another_size(chain: Chain, capsys: pytest.CaptureFixture[str]) -> None:
    """--init-weights fine-tunes from our own .pt (here at a new input size); a missing file is a clear error."""
    torch = pytest.importorskip("torch")
    common = ["train", "--data", str(chain.data), "--epochs", "1", "--batch", "4", "--workers", "0"]
    common += ["--project", str(chain.root / "runs"), "--set", "cache=false"]
    rc = cli([*common, "--imgsz", "96", "--name", "finetune", "--init-weights", str(chain.best)])
    assert rc == 0
    ckpt = torch.load(chain.root / "runs" / "finetune" / "weights" / "last.pt", map_location="cpu", weights_only=False)
    assert ckpt["train_args"]["pretrained"] == str(chain.best) and ckpt["train_args"]["imgsz"] == 96
    capsys.readouterr()
    assert cli([*common, "--name", "nope", "--init-weights", str(chain.root / "missing.pt")]) == 1
    assert "--init-weights: no such file" in capsys.readouterr().err


def test_export_variants_keep_metadata_and_dynamic_batch(chain: Chain) -> None:
    import onnx
    import onnxruntime as ort

    assert [Path(r["path"]).name for r in chain.export_report] == ["tiny.onnx", "tiny-int8.onnx", "tiny-fp16.onnx"]
    outputs = {}
    x = np.random.default_rng(0).random((2, 3, 64, 64), dtype=np.float32)  # batch 2 through a dynamic batch axis
    for path, precision in [(chain.fp32, "fp32"), (chain.int8, "int8"), (chain.fp16, "fp16")]:
        model = onnx.load(str(path))
        meta = {p.key: p.value for p in model.metadata_props}
        assert meta["task"] == "detect" and meta["stride"] == "32" and meta["imgsz"] == "[64, 64]"
        assert "pin-hole" in meta["names"]
        assert meta["inspector.precision"] == precision
        dims = model.graph.input[0].type.tensor_type.shape.dim
        assert dims[0].dim_param and dims[1].dim_value == 3  # dynamic batch (and H/W, as Ultralytics exports)
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        outputs[precision] = session.run(None, {session.get_inputs()[0].name: x})[0]
        assert outputs[precision].shape == (2, 4 + 6, 64 * 64 // 64 + 64 * 64 // 256 + 64 * 64 // 1024)
        assert outputs[precision].dtype == np.float32 and np.isfinite(outputs[precision]).all()
        if precision == "int8":
            ops = [n.op_type for n in model.graph.node]
            assert ops.count("QuantizeLinear") > 10 and ops.count("DequantizeLinear") > 10
            producer = {o: n for n in model.graph.node for o in n.output}[model.graph.output[0].name]
            assert producer.op_type == "Concat"  # the decode stays float: no DequantizeLinear at the very end
            assert json.loads(meta["inspector.calibration"])["images"] == 6
            assert json.loads(meta["inspector.calibration"])["reduce_range"] is True  # no saturating int8
        if precision == "fp16":
            assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in model.graph.initializer)
    # Each file ships with its self-test record (the fp32 file's boxes), checked on this machine at export.
    for path in (chain.fp32, chain.int8, chain.fp16):
        record = SelfTestRecord.load(sidecar_path(path))
        assert record.source["file"] == "tiny.onnx" and record.source["precision"] == "fp32" and record.images
    assert [r["selftest"]["status"] for r in chain.export_report] == ["passed"] * 3
    sizes = {Path(r["path"]).name: r["bytes"] for r in chain.export_report}
    assert sizes["tiny-int8.onnx"] < sizes["tiny-fp16.onnx"] < sizes["tiny.onnx"]
    # fp16 follows fp32 closely: boxes within a pixel at this input size, scores within 0.01.
    np.testing.assert_allclose(outputs["fp16"][:, :4], outputs["fp32"][:, :4], atol=1.0)
    np.testing.assert_allclose(outputs["fp16"][:, 4:], outputs["fp32"][:, 4:], atol=0.01)


@pytest.mark.parametrize("variant", ["fp32", "int8", "fp16"])
def test_eval_json_is_well_formed(chain: Chain, variant: str, capsys: pytest.CaptureFixture[str]) -> None:
    model = {"fp32": chain.fp32, "int8": chain.int8, "fp16": chain.fp16}[variant]
    assert cli(["eval", str(model), str(chain.data), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["images"] == 3 and report["imgsz"] == [64, 64] and len(report["sha256"]) == 64
    labels = sorted((chain.data.parent / "labels" / "val").glob("*.txt"))
    assert report["instances"] == sum(len(p.read_text().split("\n")) - 1 for p in labels)
    for key in ("map50", "map50_95"):
        assert 0.0 <= report[key] <= 1.0
    assert report["map50_95"] <= report["map50"] + 1e-9
    d = report["deeppcb"]
    assert all(0.0 <= d[k] <= 1.0 for k in ("map", "precision", "recall", "f1"))
    assert d["tp"] <= d["detections"]
    ins = report["inspection"]
    assert ins["defective_images"] == 3 and ins["good_images"] == 3  # val images all defective; 3 templates
    assert ins["escape_rate"] == pytest.approx(ins["escapes"] / 3, abs=1e-5)
    assert ins["false_reject_rate"] == pytest.approx(ins["false_rejects"] / 3, abs=1e-5)
    assert report["speed"]["images"] == 6 and report["speed"]["images_per_s"] > 0
    assert [c["class"] for c in report["classes"]] == ["open", "short", "mousebite", "spur", "copper", "pin-hole"]
    for c in report["classes"]:
        if c["instances"] == 0:
            assert c["ap50"] is None  # no ground truth: no AP, not a zero in the mean
        else:
            assert 0.0 <= c["ap50"] <= 1.0


def test_eval_rates_agree_with_class_scores(chain: Chain) -> None:
    """The eval's escapes / false rejects (via `decide`) equal those from the calibration's score matrix."""
    from inspector.accuracy import inspection_rates
    from inspector.evaluate import collect, evaluate, load_data, scores_matrix
    from inspector.types import Thresholds

    collected = collect(chain.fp32, load_data(chain.data), conf=0.001)
    for t in (0.001, 0.01, 0.05, 0.25):
        th = Thresholds.model_validate({"default": {"min_confidence": t}})
        report = evaluate(collected, th)
        defective, good = scores_matrix(collected, th)
        esc, fr = inspection_rates(defective, good, np.full(6, t))
        assert report["inspection"]["escape_rate"] == pytest.approx(esc, abs=1e-5)
        assert report["inspection"]["false_reject_rate"] == pytest.approx(fr, abs=1e-5)


def test_eval_table_and_thresholds_file(chain: Chain, capsys: pytest.CaptureFixture[str]) -> None:
    th = chain.root / "th.yaml"
    th.write_text("version: 3\ndefault: {min_confidence: 0.5}\nclasses: {copper: {min_confidence: 0.01}}\n")
    assert cli(["eval", str(chain.fp32), str(chain.data.parent), "--thresholds", str(th)]) == 0
    out = capsys.readouterr().out
    lines = {line.split()[0]: line for line in out.splitlines() if line.strip()}
    assert "0.50" in lines["open"] and "0.01" in lines["copper"]
    assert "escapes:" in out and "images/s" in out
    assert cli(["eval", str(chain.root / "missing.onnx"), str(chain.data)]) == 1


def test_calibrate_max_escape(chain: Chain, capsys: pytest.CaptureFixture[str]) -> None:
    from inspector.types import Thresholds

    out = chain.root / "cal" / "tiny.yaml"
    rc = cli(
        ["calibrate", str(chain.fp32), str(chain.data), "--max-escape", "0.34", "--floor", "0.001", "-o", str(out)]
    )
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert rc == (0 if summary["feasible"] else 3)
    th = Thresholds.model_validate(yaml.safe_load(out.read_text()))
    names = ["open", "short", "mousebite", "spur", "copper", "pin-hole"]
    assert sorted(th.classes) == sorted(names)
    assert all(0.001 <= th.classes[n].min_confidence <= 1.0 for n in names)
    assert summary["min_confidence"] == {n: th.classes[n].min_confidence for n in names}
    png = cv2.imread(str(out.with_suffix(".png")))
    assert png is not None and png.shape == (620, 900, 3)
    assert json.loads(out.with_suffix(".json").read_text())["thresholds_file"] == str(out)
    # The rates it reports are those `inspector eval` measures with the file it wrote.
    assert cli(["eval", str(chain.fp32), str(chain.data), "--json", "--thresholds", str(out)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["inspection"]["escape_rate"] == pytest.approx(summary["escape_rate"], abs=1e-5)
    assert report["inspection"]["false_reject_rate"] == pytest.approx(summary["false_reject_rate"], abs=1e-5)
    if summary["feasible"]:
        assert report["inspection"]["escapes"] <= 1  # 0.34 of 3 defective images


def test_calibrate_box_f1_floors(chain: Chain, capsys: pytest.CaptureFixture[str]) -> None:
    """--box-f1: per-class floors where the box F-score peaks; the thresholds never sit under them when used."""
    from inspector.calibrate import box_f1_floors
    from inspector.evaluate import collect, load_data

    out = chain.root / "cal" / "f1.yaml"
    argv = ["calibrate", str(chain.fp32), str(chain.data), "--max-escape", "0.34", "--floor", "0.001"]
    rc = cli([*argv, "--box-f1", "--iou", "0.5", "-o", str(out)])
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert rc == (0 if summary["feasible"] else 3) and summary["iou"] == 0.5
    floors = summary["box_f1"]["floors"]
    expected = box_f1_floors(collect(chain.fp32, load_data(chain.data), conf=0.001, iou=0.5), 0.001)
    assert list(floors.values()) == pytest.approx(list(expected), abs=1e-6)
    if summary["box_f1"]["used"]:
        assert all(summary["min_confidence"][n] >= floors[n] - 1e-6 for n in floors)
    assert "NMS IoU 0.5" in out.read_text().splitlines()[0]
    # It needs labelled images: not with --max-false-reject. An NMS IoU outside (0, 1] is refused.
    assert cli(["calibrate", str(chain.fp32), str(chain.data), "--max-false-reject", "0.1", "--box-f1"]) == 2
    assert cli([*argv, "--iou", "0"]) == 2


def test_calibrate_max_false_reject(chain: Chain, capsys: pytest.CaptureFixture[str]) -> None:
    from inspector.types import Thresholds

    out = chain.root / "cal" / "good-only.yaml"
    assert cli(["calibrate", str(chain.int8), str(chain.data), "--max-false-reject", "0.0", "-o", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["false_reject_rate"] == 0.0 and summary["feasible"]
    th = Thresholds.model_validate(yaml.safe_load(out.read_text()))
    assert all(rule.min_confidence >= 0.05 for rule in th.classes.values())  # the default floor
    assert out.read_text().startswith("# inspector calibrate")
    # A target outside [0, 1) is refused.
    assert cli(["calibrate", str(chain.fp32), str(chain.data), "--max-false-reject", "1.5"]) == 2
