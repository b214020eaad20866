"""The ONNX detector against Ultralytics itself, plus loading errors, layouts, providers, buffers and batching.

The models come from `tests/model_factory.py` (built from yaml, trained a few epochs on generated shapes, exported,
cached under `.cache/test-models/`). Ultralytics is only the reference here; `inspector.detector` never imports it.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
import pytest

from inspector.config import ModelConfig
from inspector.detector import (
    BufferPool,
    ModelError,
    OnnxDetector,
    letterbox_params,
    load_detector,
    nms,
    rect_shape,
)
from inspector.types import Detections
from tests.model_factory import (
    NAMES,
    export_untrained,
    legacy_v5_onnx,
    legacy_v5_reference,
    rewrite_metadata,
)

REPO = Path(__file__).resolve().parent.parent
PARITY_CONF = 0.1  # low enough for hundreds of boxes across the 24 images with these briefly trained models
IOU_MIN, CONF_TOL = 0.98, 0.005


# ------------------------------------------------------------------------------------------------ helpers
def _iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two xyxy boxes. Corners are sorted first: a briefly trained end-to-end head can emit x1 > x2, and
    Ultralytics passes such boxes through unchanged, as we do."""
    a = np.concatenate([np.minimum(a[:2], a[2:]), np.maximum(a[:2], a[2:])])
    b = np.concatenate([np.minimum(b[:2], b[2:]), np.maximum(b[:2], b[2:])])
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else float(np.allclose(a, b))


def assert_same_boxes(ours: Detections, ref: Detections, conf: float, label: str) -> int:
    """The acceptance rule: same classes, IoU >= 0.98 box by box, confidence within 0.005; a box without a partner
    is allowed only when its confidence lies within 0.005 of the threshold. Returns the number of matched boxes."""
    unmatched_ref = list(range(len(ref)))
    matched = 0
    # Highest-confidence first, each of ours takes the best-overlapping reference box of the same class.
    for i in np.argsort(-ours.confidence, kind="stable"):
        best, best_iou = None, 0.0
        for j in unmatched_ref:
            if ref.class_id[j] != ours.class_id[i]:
                continue
            v = _iou(ours.xyxy[i], ref.xyxy[j])
            if v > best_iou:
                best, best_iou = j, v
        if best is None or best_iou < IOU_MIN:
            assert abs(float(ours.confidence[i]) - conf) <= CONF_TOL, (
                f"{label}: extra box {ours.xyxy[i]} class {ours.class_id[i]} conf {ours.confidence[i]:.4f} "
                f"(best IoU with Ultralytics {best_iou:.3f})"
            )
            continue
        assert abs(float(ours.confidence[i]) - float(ref.confidence[best])) <= CONF_TOL, (
            f"{label}: confidence {ours.confidence[i]:.4f} vs Ultralytics {ref.confidence[best]:.4f}"
        )
        unmatched_ref.remove(best)
        matched += 1
    for j in unmatched_ref:
        assert abs(float(ref.confidence[j]) - conf) <= CONF_TOL, (
            f"{label}: missing box {ref.xyxy[j]} class {ref.class_id[j]} conf {ref.confidence[j]:.4f}"
        )
    return matched


def ultralytics_predict(model_path: Path, images: list[Path], conf: float, **kwargs: object) -> list[Detections]:
    """Ultralytics' own `YOLO(onnx).predict`, one image per call (its default batch of 1)."""
    from ultralytics import YOLO

    model = YOLO(str(model_path), task="detect")
    out = []
    for path in images:
        r = model.predict(str(path), conf=conf, verbose=False, **kwargs)[0]
        b = r.boxes
        out.append(Detections(b.xyxy.numpy(), b.conf.numpy(), b.cls.numpy().astype(np.int64)))
    return out


def run_detect_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, list[dict], str]:
    """`inspector detect ARGV` in-process through the command table; returns (status, JSON lines, stderr)."""
    from inspector.cli import main

    capsys.readouterr()  # drop what came before (a fixture that just trained its model prints progress)
    code = main(["detect", *argv])
    captured = capsys.readouterr()
    lines = [json.loads(line) for line in captured.out.splitlines() if line.strip()]
    return code, lines, captured.err


def dets_from_json(entry: dict) -> Detections:
    d = entry["detections"]
    return Detections(
        np.array([x["xyxy"] for x in d], np.float32).reshape(-1, 4),
        np.array([x["confidence"] for x in d], np.float32),
        np.array([x["class_id"] for x in d], np.int64),
    )


# ------------------------------------------------------------------------------------------------ parity
MODELS = ["yolov8n_onnx", "yolo11n_onnx", "yolo26n_e2e_onnx"]


@pytest.mark.slow
@pytest.mark.parametrize("fixture", MODELS)
def test_inspector_detect_matches_ultralytics_predict(
    fixture: str, request: pytest.FixtureRequest, test_images: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """Acceptance: `inspector detect --json` == `YOLO(onnx).predict` on 24 mixed images (fixed letterbox)."""
    model_path: Path = request.getfixturevalue(fixture)
    assert len(test_images) >= 20
    code, lines, err = run_detect_cli(
        [str(model_path), str(test_images[0].parent), "--json", "--conf", str(PARITY_CONF)], capsys
    )
    assert code == 0, err
    assert [Path(e["image"]) for e in lines] == test_images
    # A model with dynamic H/W makes Ultralytics take imgsz from the call and pad to the stride only (rect);
    # imgsz=320, rect=False asks it for the model's own input size, as for a static export (the default one).
    ref = ultralytics_predict(model_path, test_images, PARITY_CONF, imgsz=320, rect=False)
    matched = 0
    names = NAMES
    for entry, r, path in zip(lines, ref, test_images, strict=True):
        ours = dets_from_json(entry)
        assert all(x["class_name"] == names[x["class_id"]] for x in entry["detections"])
        matched += assert_same_boxes(ours, r, PARITY_CONF, path.name)
    assert matched >= 20, f"only {matched} boxes compared: the test model gives too few detections"


@pytest.mark.slow
def test_rect_mode_matches_ultralytics_default_predict(yolov8n_onnx: Path, test_images: list[Path]) -> None:
    """rect=True on a dynamic-shape export == Ultralytics' default predict (stride-padded letterbox)."""
    det = OnnxDetector(yolov8n_onnx, conf=PARITY_CONF, rect=True)
    ref = ultralytics_predict(yolov8n_onnx, test_images, PARITY_CONF, imgsz=320)
    shapes = set()
    for path, r in zip(test_images, ref, strict=True):
        image = cv2.imread(str(path))
        shapes.add(det.input_shape_for([image.shape[:2]]))
        assert_same_boxes(det.detect([image])[0], r, PARITY_CONF, path.name)
    assert len(shapes) >= 3  # wide, tall and square inputs were all exercised


def test_preprocess_is_ultralytics_letterbox_bit_for_bit(yolov8n_onnx: Path, test_images: list[Path]) -> None:
    """The input tensor equals Ultralytics' LetterBox + BGR->RGB + /255, exactly."""
    from ultralytics.data.augment import LetterBox

    det = OnnxDetector(yolov8n_onnx, warmup=False)
    for path in test_images[:12]:
        image = cv2.imread(str(path))
        ref = LetterBox((320, 320), auto=False, stride=32)(image=image)
        ref = (ref[..., ::-1].transpose(2, 0, 1).astype(np.float32) / np.float32(255))[None]
        prepared = det.preprocess([image])
        np.testing.assert_array_equal(prepared.tensor, ref, err_msg=path.name)
        prepared.release()


@pytest.mark.parametrize(
    ("shape", "new"),
    [((480, 640), (320, 320)), ((213, 379), (320, 320)), ((97, 131), (320, 320)), ((1, 3000), (320, 320))],
)
def test_letterbox_params_and_rect_shape(shape: tuple[int, int], new: tuple[int, int]) -> None:
    from ultralytics.data.augment import LetterBox

    p = letterbox_params(shape, new)
    ref = LetterBox(new, auto=False).get_params({"img": np.zeros((*shape, 3), np.uint8)})
    assert (p.new_unpad, p.left, p.top) == (tuple(ref["new_unpad"]), ref["left"], ref["top"])
    auto = LetterBox(new, auto=True, stride=32)(image=np.zeros((*shape, 3), np.uint8))
    assert rect_shape(shape, new, 32) == auto.shape[:2]


# ------------------------------------------------------------------------------------------------ NMS
def test_nms_matches_torchvision() -> None:
    torch = pytest.importorskip("torch")
    tv = pytest.importorskip("torchvision")
    rng = np.random.default_rng(0)
    for trial in range(30):
        n = int(rng.integers(1, 300))
        xy = rng.uniform(0, 200, size=(n, 2)).astype(np.float32)
        wh = rng.uniform(1, 80, size=(n, 2)).astype(np.float32)
        boxes = np.concatenate([xy, xy + wh], 1)
        scores = np.round(rng.uniform(0, 1, size=n), 2).astype(np.float32)  # rounded: plenty of ties
        for thr in (0.3, 0.5, 0.7):
            ref = tv.ops.nms(torch.from_numpy(boxes), torch.from_numpy(scores), thr).numpy()
            np.testing.assert_array_equal(nms(boxes, scores, thr), ref, err_msg=f"trial {trial} thr {thr}")
    assert nms(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), 0.5).shape == (0,)


# ------------------------------------------------------------------------------------------------ import hygiene
def test_import_does_not_load_torch_or_ultralytics() -> None:
    code = (
        "import sys, inspector.detector, inspector.detect_cli\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in {'torch', 'ultralytics', 'torchvision'})\n"
        "print(bad)\n"
        "sys.exit(1 if bad else 0)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, f"importing inspector.detector loaded {r.stdout.strip()} {r.stderr[-500:]}"


def test_runtime_modules_do_not_load_torch_or_ultralytics() -> None:
    """Every `inspector` module but the training glue (train, export) imports without torch / ultralytics."""
    code = (
        "import importlib, pkgutil, sys, inspector\n"
        "for m in pkgutil.iter_modules(inspector.__path__):\n"
        "    if m.name not in {'train', 'export', '__main__'}:\n"
        "        importlib.import_module('inspector.' + m.name)\n"
        "        bad = sorted(k for k in sys.modules if k.split('.')[0] in {'torch', 'ultralytics'})\n"
        "        if bad:\n"
        "            sys.exit(f'inspector.{m.name} loaded {bad[:3]}')\n"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-1000:]


# ------------------------------------------------------------------------------------------------ loading errors
def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="not found"):
        OnnxDetector(tmp_path / "nope.onnx")
    with pytest.raises(ModelError, match="not a file"):
        OnnxDetector(tmp_path)


@pytest.mark.parametrize("content", [b"", b"this is not a model", bytes(range(256)) * 40])
def test_not_onnx(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(content)
    with pytest.raises(ModelError, match="not a loadable ONNX model"):
        OnnxDetector(path)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("yaml", "message"),
    [
        ("yolov8n-seg.yaml", "segmentation"),
        ("yolov8n-cls.yaml", "classification"),
        ("yolov8n-pose.yaml", "pose"),
        ("yolov8n-obb.yaml", "obb"),
    ],
)
def test_other_tasks_are_refused(yaml: str, message: str, tmp_path: Path, tiny_model_dir: Path) -> None:
    """Real Ultralytics exports of the other tasks; refused by metadata task and, without metadata, by the graph."""
    path = export_untrained(yaml, imgsz=64, root=tiny_model_dir)
    with pytest.raises(ModelError, match=message):
        OnnxDetector(path, warmup=False)
    bare = rewrite_metadata(path, tmp_path / "bare.onnx", {"*": None})
    with pytest.raises(ModelError):
        OnnxDetector(bare, names={0: "a"}, imgsz=(64, 64), warmup=False)


def _graph(path: Path, inputs: list[tuple[str, int, list]], out_shape: list) -> Path:
    """A trivial ONNX graph with the given inputs (name, elem type, shape) and one float output."""
    import onnx
    from onnx import TensorProto, helper

    nodes = [
        helper.make_node("Cast", [inputs[0][0]], ["xf"], to=TensorProto.FLOAT),
        helper.make_node("ReduceMean", ["xf"], ["r"], keepdims=0),
        helper.make_node("Expand", ["r", "shape"], ["output0"]),
    ]
    init = [
        helper.make_tensor(
            "shape", TensorProto.INT64, [len(out_shape)], [d if isinstance(d, int) else 1 for d in out_shape]
        )
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info(n, t, s) for n, t, s in inputs],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, out_shape)],
        initializer=init,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    meta = model.metadata_props.add()
    meta.key, meta.value = "names", "{0: 'a', 1: 'b'}"
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ([("images", 1, [1, 1, 64, 64])], "1 channels"),
        ([("images", 1, [1, 3, 64])], "expected \\[batch, 3, height, width\\]"),
        ([("images", 2, [1, 3, 64, 64])], "expected float32 or float16"),
        ([("images", 1, [1, 3, 64, 64]), ("extra", 1, [1])], "2 inputs"),
        ([("images", 1, [1, 3, "h", "w"])], "dynamic height/width and no imgsz"),
        ([("images", 1, [1, 3, 64, "w"])], "one fixed and one dynamic"),
    ],
)
def test_unfeedable_inputs(tmp_path: Path, inputs: list, message: str) -> None:
    path = _graph(tmp_path / "m.onnx", inputs, [1, 6, 84])
    with pytest.raises(ModelError, match=message):
        OnnxDetector(path, warmup=False)


def test_metadata_that_disagrees_with_the_graph(yolov8n_onnx: Path, yolo26n_e2e_onnx: Path, tmp_path: Path) -> None:
    three = rewrite_metadata(yolov8n_onnx, tmp_path / "three.onnx", {"names": "{0: 'a', 1: 'b', 2: 'c'}"})
    with pytest.raises(ModelError, match="disagrees with the graph"):
        OnnxDetector(three, warmup=False)
    size = rewrite_metadata(yolo26n_e2e_onnx, tmp_path / "size.onnx", {"imgsz": "[640, 640]"})
    with pytest.raises(ModelError, match="imgsz \\[640, 640\\] disagrees"):
        OnnxDetector(size, warmup=False)
    e2e = rewrite_metadata(yolov8n_onnx, tmp_path / "e2e.onnx", {"end2end": "True"})
    with pytest.raises(ModelError, match="end-to-end"):
        OnnxDetector(e2e, warmup=False)
    with pytest.raises(ModelError, match="configured imgsz"):
        OnnxDetector(yolo26n_e2e_onnx, imgsz=(640, 640), warmup=False)


def test_model_without_metadata_uses_config(yolov8n_onnx: Path, tmp_path: Path, test_images: list[Path]) -> None:
    bare = rewrite_metadata(yolov8n_onnx, tmp_path / "bare.onnx", {"*": None})
    with pytest.raises(ModelError, match="no class names"):
        OnnxDetector(bare, imgsz=(320, 320), warmup=False)
    with pytest.raises(ModelError, match="no imgsz"):
        OnnxDetector(bare, names=NAMES, warmup=False)
    det = OnnxDetector(bare, names=NAMES, imgsz=(320, 320), stride=32, conf=PARITY_CONF)
    ref = OnnxDetector(yolov8n_onnx, conf=PARITY_CONF)
    image = cv2.imread(str(test_images[1]))
    a, b = det.detect([image])[0], ref.detect([image])[0]
    np.testing.assert_array_equal(a.xyxy, b.xyxy)
    assert det.names == NAMES and det.layout == "v8"


# ------------------------------------------------------------------------------------------------ layouts
def test_metadata_is_read(yolov8n_onnx: Path, yolo11n_onnx: Path, yolo26n_e2e_onnx: Path) -> None:
    v8 = OnnxDetector(yolov8n_onnx, warmup=False)
    assert (v8.layout, v8.imgsz, v8.stride, v8.task, v8.names) == ("v8", (320, 320), 32, "detect", NAMES)
    assert v8.max_batch == 8 and v8.static_batch is None and v8.dynamic_hw
    assert v8.providers == ["CPUExecutionProvider"] and len(v8.sha256) == 64
    assert OnnxDetector(yolo11n_onnx, warmup=False).layout == "v8"
    e2e = OnnxDetector(yolo26n_e2e_onnx, warmup=False)
    assert (e2e.layout, e2e.max_batch, e2e.dynamic_hw) == ("e2e", 1, False)
    assert json.dumps(e2e.describe())


def test_yolov5_legacy_layout(yolov5_legacy_onnx: Path) -> None:
    """[B, N, 5+nc]: score = objectness x class score; boxes land where the graph puts them."""
    det = OnnxDetector(yolov5_legacy_onnx, conf=0.25)
    assert (det.layout, det.imgsz, det.names) == ("v5", (64, 64), {0: "c0", 1: "c1"})
    # 128x128 black image with one red 16x16 block at (32..48): input cell (2, 2) of the 8-px grid is fully red.
    image = np.zeros((128, 128, 3), np.uint8)
    image[32:48, 32:48] = (0, 0, 255)
    prepared = det.preprocess([image])
    raw = det.infer(prepared)
    np.testing.assert_allclose(raw, legacy_v5_reference(prepared.tensor[:1].copy()), rtol=1e-5, atol=1e-6)
    dets = det.postprocess(raw, prepared)[0]
    assert len(dets) == 1
    cls_scores = raw[0, 2 * 8 + 2, 5:]
    assert dets.class_id[0] == int(np.argmax(cls_scores))
    assert dets.confidence[0] == pytest.approx(float(cls_scores.max()) * 1.0, rel=1e-6)
    # cell centre (20, 20) in input pixels, box 16 px -> input 12..28 -> original (x2 scale) 24..56.
    np.testing.assert_allclose(dets.xyxy[0], [24, 24, 56, 56], atol=1e-4)


def test_yolov5_legacy_without_metadata_and_batches(tmp_path: Path) -> None:
    path = legacy_v5_onnx(tmp_path / "bare.onnx", with_metadata=False, batch="batch")
    with pytest.raises(ModelError, match="no class names"):
        OnnxDetector(path)
    det = OnnxDetector(path, names={0: "x", 1: "y"}, max_batch=3)
    assert (det.layout, det.imgsz, det.max_batch) == ("v5", (64, 64), 3)
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, size=(int(rng.integers(40, 200)), 90, 3), dtype=np.uint8) for _ in range(7)]
    together = det.detect(images, conf=0.3)
    alone = [det.detect([im], conf=0.3)[0] for im in images]
    for a, b in zip(together, alone, strict=True):
        np.testing.assert_allclose(a.xyxy, b.xyxy, atol=1e-3)
        np.testing.assert_allclose(a.confidence, b.confidence, atol=1e-5)


def test_nc1_ambiguous_shape_needs_layout(tmp_path: Path) -> None:
    """[B, N, 6] with one class is YOLOv5 or end-to-end: without metadata saying which, the caller must say."""
    path = legacy_v5_onnx(tmp_path / "nc1.onnx", nc=1, with_metadata=False)
    with pytest.raises(ModelError, match="layout="):
        OnnxDetector(path, names={0: "x"}, imgsz=64)
    assert OnnxDetector(path, names={0: "x"}, imgsz=64, layout="v5").layout == "v5"
    with pytest.raises(ModelError, match="does not fit layout"):
        OnnxDetector(path, names={0: "x"}, imgsz=64, layout="v8")


# ------------------------------------------------------------------------------------------------ inputs
def test_grey_and_bgra_inputs(yolov8n_onnx: Path, test_images: list[Path]) -> None:
    det = OnnxDetector(yolov8n_onnx, conf=PARITY_CONF)
    grey = cv2.imread(str(next(p for p in test_images if "grey" in p.name)), cv2.IMREAD_GRAYSCALE)
    bgr = cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR)
    bgra = cv2.cvtColor(bgr, cv2.COLOR_BGR2BGRA)
    results = det.detect([grey, grey[..., None], bgr, bgra])
    for r in results[:2] + results[3:]:
        np.testing.assert_array_equal(r.xyxy, results[2].xyxy)


def test_bad_images_are_refused(yolov8n_onnx: Path) -> None:
    det = OnnxDetector(yolov8n_onnx, warmup=False, max_batch=2)
    with pytest.raises(ValueError, match="uint8"):
        det.detect([np.zeros((10, 10, 3), np.float32)])
    with pytest.raises(ValueError, match="got shape"):
        det.detect([np.zeros((10, 10, 5), np.uint8)])
    with pytest.raises(ValueError, match="empty image"):
        det.detect([np.zeros((0, 10, 3), np.uint8)])
    with pytest.raises(TypeError):
        det.detect(["image.png"])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="max batch"):
        det.preprocess([np.zeros((10, 10, 3), np.uint8)] * 3)
    assert det.detect([]) == []


# ------------------------------------------------------------------------------------------------ batching, buffers
def test_batches_match_single_images(yolov8n_onnx: Path, yolo26n_e2e_onnx: Path, test_images: list[Path]) -> None:
    images = [cv2.imread(str(p), cv2.IMREAD_UNCHANGED) for p in test_images[:10]]
    for path in (yolov8n_onnx, yolo26n_e2e_onnx):
        det = OnnxDetector(path, conf=PARITY_CONF, max_batch=4)
        together = det.detect(images)  # runs of 4, 4, 2 (static batch 1: ten runs)
        for im, r in zip(images, together, strict=True):
            single = det.detect([im])[0]
            np.testing.assert_array_equal(single.class_id, r.class_id)
            np.testing.assert_allclose(single.xyxy, r.xyxy, atol=0.05)
            np.testing.assert_allclose(single.confidence, r.confidence, atol=1e-4)


def test_prepared_buffers_are_not_shared_while_in_flight(yolov8n_onnx: Path, test_images: list[Path]) -> None:
    """Preprocessing batch k+1 must not touch batch k's tensor before batch k is postprocessed."""
    det = OnnxDetector(yolov8n_onnx, conf=PARITY_CONF, max_batch=2)
    a_imgs = [cv2.imread(str(p)) for p in test_images[0:2]]
    b_imgs = [cv2.imread(str(p)) for p in test_images[2:4]]
    expected = det.detect(a_imgs) + det.detect(b_imgs)
    a = det.preprocess(a_imgs)
    a_copy = a.tensor.copy()
    b = det.preprocess(b_imgs)  # while "a" is still waiting for inference
    assert not np.shares_memory(a.tensor, b.tensor)
    np.testing.assert_array_equal(a.tensor, a_copy)
    got = det.postprocess(det.infer(a), a) + det.postprocess(det.infer(b), b)
    assert a.released and b.released
    for e, g in zip(expected, got, strict=True):
        np.testing.assert_array_equal(e.xyxy, g.xyxy)
    with pytest.raises(ValueError, match="released"):
        det.infer(a)
    # A released buffer is reused, not reallocated.
    allocated = det._pool.allocated
    for _ in range(5):
        det.detect(a_imgs)
    assert det._pool.allocated == allocated


def test_buffer_pool_never_hands_out_a_buffer_twice() -> None:
    pool = BufferPool(16, np.float32, keep=2)
    bufs = [pool.acquire() for _ in range(4)]
    assert len({id(b) for b in bufs}) == 4
    for b in bufs:
        pool.release(b)
    again = [pool.acquire() for _ in range(3)]
    assert len({id(b) for b in again}) == 3 and pool.allocated == 5


def test_threads_share_one_detector(yolov8n_onnx: Path, test_images: list[Path]) -> None:
    det = OnnxDetector(yolov8n_onnx, conf=PARITY_CONF)
    images = [cv2.imread(str(p)) for p in test_images[:6]]
    expected = [det.detect([im])[0] for im in images]
    errors: list[str] = []

    def work(offset: int) -> None:
        for k in range(12):
            i = (k + offset) % len(images)
            got = det.detect([images[i]])[0]
            if not np.array_equal(got.xyxy, expected[i].xyxy):
                errors.append(f"thread {offset} image {i}")

    threads = [threading.Thread(target=work, args=(t,)) for t in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


def test_conf_iou_and_max_det(yolo11n_onnx: Path, test_images: list[Path]) -> None:
    image = cv2.imread(str(test_images[3]))
    det = OnnxDetector(yolo11n_onnx, conf=0.01, max_det=5)
    low = det.detect([image])[0]
    assert len(low) == 5 and np.all(np.diff(low.confidence) <= 0)
    many = OnnxDetector(yolo11n_onnx, conf=0.01).detect([image])[0]
    fewer = OnnxDetector(yolo11n_onnx, conf=0.01).detect([image], iou=0.3)[0]
    high = OnnxDetector(yolo11n_onnx).detect([image], conf=0.5)[0]
    assert len(many) > len(fewer) and len(high) < len(many)
    assert np.all(high.confidence > 0.5)
    h, w = image.shape[:2]
    assert np.all(many.xyxy >= 0) and np.all(many.xyxy[:, [0, 2]] <= w) and np.all(many.xyxy[:, [1, 3]] <= h)


# ------------------------------------------------------------------------------------------------ providers, config
def test_unavailable_provider_falls_back_to_cpu(yolov5_legacy_onnx: Path, caplog: pytest.LogCaptureFixture) -> None:
    missing = [p for p in ("openvino", "tensorrt", "cuda") if
               {"openvino": "OpenVINOExecutionProvider", "tensorrt": "TensorrtExecutionProvider",
                "cuda": "CUDAExecutionProvider"}[p] not in ort.get_available_providers()]  # fmt: skip
    if not missing:
        pytest.skip("every optional provider is installed here")
    with caplog.at_level(logging.WARNING, logger="inspector.detector"):
        det = OnnxDetector(yolov5_legacy_onnx, providers=[missing[0], "cpu"], threads=1)
    assert det.providers == ["CPUExecutionProvider"]
    assert any("falling back to CPU" in r.getMessage() for r in caplog.records)


def test_load_detector_from_config(yolov8n_onnx: Path) -> None:
    config = ModelConfig(path=yolov8n_onnx, conf=0.4, iou=0.5, max_det=10, threads=1)
    det = load_detector(config, max_batch=2, warmup=False)
    assert (det.conf, det.iou, det.max_det, det.max_batch) == (0.4, 0.5, 10, 2)
    with pytest.raises(ModelError, match="not found"):
        load_detector(ModelConfig(path=yolov8n_onnx.parent / "missing.onnx"))


def test_thread_spinning_follows_the_config(yolov8n_onnx: Path) -> None:
    """`model.spinning` (off by default: the shorter latency tail) reaches the onnxruntime session."""

    def spinning(det: OnnxDetector) -> str:
        return det.session.get_session_options().get_session_config_entry("session.intra_op.allow_spinning")

    off = load_detector(ModelConfig(path=yolov8n_onnx), warmup=False)
    assert spinning(off) == "0"
    on = load_detector(ModelConfig(path=yolov8n_onnx, spinning=True), warmup=False)
    with pytest.raises(RuntimeError):  # not set: onnxruntime's own default, which spins
        spinning(on)


def test_half_precision_model(tmp_path: Path, tiny_model_dir: Path) -> None:
    """A float16 export (`half=True`) is fed a float16 tensor."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    src = legacy_v5_onnx(tmp_path / "f32.onnx")
    model = onnx.load(str(src))
    # Put a Cast to float32 behind a float16 input: the graph stays the same, the input type changes.
    model.graph.input[0].type.tensor_type.elem_type = TensorProto.FLOAT16
    for node in model.graph.node:
        for k, name in enumerate(node.input):
            if name == "images":
                node.input[k] = "images_f32"
    model.graph.node.insert(0, helper.make_node("Cast", ["images"], ["images_f32"], to=TensorProto.FLOAT))
    path = tmp_path / "f16.onnx"
    onnx.save(model, str(path))
    det = OnnxDetector(path)
    image = np.zeros((128, 128, 3), np.uint8)
    image[32:48, 32:48] = (0, 0, 255)
    assert det.input_dtype == np.float16
    assert len(det.detect([image])[0]) == 1
