"""Real, small ONNX detection models and test images for the test suite, built locally and cached.

Nothing is downloaded. Each model is built from its Ultralytics yaml (random weights), trained a few epochs on a
tiny generated dataset (bright filled rectangles = class 0 "rect", filled circles = class 1 "circle" on dark noisy
backgrounds) so that it gives real boxes, and exported to ONNX. Exports are cached under
`.cache/test-models/<key>/` where the key holds the Ultralytics and torch versions and `RECIPE_VERSION`, so a second
run (and every other test session on the machine) reuses them. Building is guarded by a file lock, so parallel
pytest processes wait for one another instead of training twice.

Ultralytics and torch are imported inside the build functions only: importing this module is cheap, and
`make_test_images` / `legacy_v5_onnx` need neither.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.metadata
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

__all__ = [
    "CACHE_ROOT",
    "NAMES",
    "RECIPE_VERSION",
    "SPECS",
    "TEST_IMAGE_SHAPES",
    "ModelSpec",
    "build_model",
    "cache_dir",
    "draw_scene",
    "export_untrained",
    "legacy_v5_onnx",
    "make_dataset",
    "make_test_images",
    "rewrite_metadata",
]

REPO_ROOT = Path(__file__).resolve().parent.parent
CACHE_ROOT = REPO_ROOT / ".cache" / "test-models"
# Bump when the dataset, training recipe or export arguments change: the cache key changes with it.
RECIPE_VERSION = 2
NAMES: dict[int, str] = {0: "rect", 1: "circle"}

# (h, w, grey) of the images `make_test_images` writes, cycled: square, 4:3, 3:4, 16:9, 9:16 (portrait), odd sizes
# that do not divide by the stride, tiny and large; every third one grey.
TEST_IMAGE_SHAPES: list[tuple[int, int]] = [
    (320, 320),
    (480, 640),
    (640, 480),
    (360, 640),
    (640, 360),
    (240, 320),
    (213, 379),
    (500, 500),
    (720, 1280),
    (1280, 720),
    (97, 131),
    (333, 250),
]


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "none"


def cache_dir() -> Path:
    """`.cache/test-models/ultralytics-<v>-torch-<v>-r<RECIPE_VERSION>/`, created if missing."""
    key = f"ultralytics-{_version('ultralytics')}-torch-{_version('torch')}-r{RECIPE_VERSION}"
    path = CACHE_ROOT / key
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Exclusive inter-process lock on `path` (a lock file), held for the `with` block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


# ----------------------------------------------------------------------------------------------------------- images
def draw_scene(
    rng: np.random.Generator, h: int, w: int, grey: bool = False, max_objects: int = 4
) -> tuple[np.ndarray, list[tuple[int, float, float, float, float]]]:
    """One synthetic image and its labels.

    Returns (image, labels): image (h, w, 3) uint8 BGR, or (h, w) uint8 when `grey`; labels a list of
    (class_id, x1, y1, x2, y2) in pixels. Shapes are bright (value >= 170) on a dark noisy background (~20-60),
    sized 10-35 % of the short side, so that a model trained a few epochs finds them.
    """
    base = rng.integers(15, 60)
    img = np.clip(rng.normal(base, 12, size=(h, w, 3)), 0, 255).astype(np.uint8)
    labels: list[tuple[int, float, float, float, float]] = []
    short = min(h, w)
    for _ in range(int(rng.integers(1, max_objects + 1))):
        cls = int(rng.integers(0, 2))
        size = int(rng.uniform(0.10, 0.35) * short)
        size = max(size, 6)
        color = tuple(int(c) for c in rng.integers(170, 256, size=3))
        if cls == 0:
            bw = size
            bh = max(6, int(size * rng.uniform(0.5, 1.5)))
            bh = min(bh, h - 2)
            x1 = int(rng.integers(0, max(1, w - bw)))
            y1 = int(rng.integers(0, max(1, h - bh)))
            cv2.rectangle(img, (x1, y1), (x1 + bw - 1, y1 + bh - 1), color, thickness=-1)
            labels.append((0, x1, y1, x1 + bw, y1 + bh))
        else:
            r = max(3, size // 2)
            cx = int(rng.integers(r, max(r + 1, w - r)))
            cy = int(rng.integers(r, max(r + 1, h - r)))
            cv2.circle(img, (cx, cy), r, color, thickness=-1, lineType=cv2.LINE_AA)
            labels.append((1, cx - r, cy - r, cx + r + 1, cy + r + 1))
    if grey:
        return cv2.cvtColor(img, cv2.COLOR_BGR2GRAY), labels
    return img, labels


def make_test_images(folder: str | Path, n: int = 24, seed: int = 1234) -> list[Path]:
    """Write `n` PNG images of mixed sizes and aspect ratios into `folder`; return their paths, sorted.

    Sizes cycle through `TEST_IMAGE_SHAPES` (square, 4:3, 3:4, 16:9, 9:16, odd and tiny sizes, up to 1280 px);
    every third image is greyscale (stored as a 1-channel PNG). PNG is lossless, so every reader sees the same
    pixels. The same `seed` gives the same images.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        h, w = TEST_IMAGE_SHAPES[i % len(TEST_IMAGE_SHAPES)]
        grey = i % 3 == 2
        img, _ = draw_scene(rng, h, w, grey=grey)
        path = folder / f"img{i:03d}_{w}x{h}{'_grey' if grey else ''}.png"
        cv2.imwrite(str(path), img)
        paths.append(path)
    return sorted(paths)


def make_dataset(folder: str | Path, n_train: int = 48, n_val: int = 8, seed: int = 0) -> Path:
    """Write a YOLO-format dataset of generated scenes (160-320 px) into `folder`; return its data.yaml path."""
    folder = Path(folder)
    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("val", n_val)):
        (folder / "images" / split).mkdir(parents=True, exist_ok=True)
        (folder / "labels" / split).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            h, w = (int(v) for v in rng.integers(160, 321, size=2))
            img, labels = draw_scene(rng, h, w, grey=bool(rng.random() < 0.2))
            cv2.imwrite(str(folder / "images" / split / f"{i:04d}.png"), img)
            lines = [
                f"{c} {(x1 + x2) / 2 / w:.6f} {(y1 + y2) / 2 / h:.6f} {(x2 - x1) / w:.6f} {(y2 - y1) / h:.6f}"
                for c, x1, y1, x2, y2 in labels
            ]
            (folder / "labels" / split / f"{i:04d}.txt").write_text("\n".join(lines) + "\n")
    data = folder / "data.yaml"
    names = "\n".join(f"  {k}: {v}" for k, v in NAMES.items())
    data.write_text(f"path: {folder.resolve()}\ntrain: images/train\nval: images/val\nnames:\n{names}\n")
    return data


# ----------------------------------------------------------------------------------------------------------- models
@dataclass(frozen=True)
class ModelSpec:
    """How one cached test model is built.

    name: file stem in the cache; yaml: Ultralytics architecture; epochs/train_imgsz: the cheap training run;
    export: keyword arguments for `YOLO.export` (format onnx is implied).
    """

    name: str
    yaml: str
    epochs: int
    train_imgsz: int
    export: tuple[tuple[str, object], ...]

    def describe(self) -> dict[str, object]:
        return {"yaml": self.yaml, "epochs": self.epochs, "train_imgsz": self.train_imgsz, "export": dict(self.export)}


_EXPORT = (("imgsz", 320), ("dynamic", True), ("simplify", True))
SPECS: dict[str, ModelSpec] = {
    "yolov8n": ModelSpec("yolov8n", "yolov8n.yaml", 40, 160, _EXPORT),
    "yolo11n": ModelSpec("yolo11n", "yolo11n.yaml", 40, 160, _EXPORT),
    # nms=False selects YOLO26's NMS-free one-to-one head: output [1, 300, 6] (the deprecated `end2end=True`).
    # Static batch 1, as `yolo export` gives by default, so the static-shape path is covered too.
    "yolo26n_e2e": ModelSpec("yolo26n_e2e", "yolo26n.yaml", 40, 160, (("imgsz", 320), ("nms", False))),
}


def _dataset(root: Path) -> Path:
    """The shared training dataset in the cache (built once)."""
    folder = root / "dataset"
    data = folder / "data.yaml"
    with _locked(root / "dataset.lock"):
        if not data.exists():
            tmp = Path(tempfile.mkdtemp(dir=root, prefix="dataset-tmp-"))
            make_dataset(tmp)
            shutil.rmtree(folder, ignore_errors=True)
            tmp.rename(folder)
            # data.yaml holds the absolute path: rewrite it for the final location.
            text = (folder / "data.yaml").read_text().replace(str(tmp.resolve()), str(folder.resolve()))
            (folder / "data.yaml").write_text(text)
    return data


def build_model(key: str, root: Path | None = None) -> Path:
    """Return the cached ONNX of `SPECS[key]`, training and exporting it first when it is not cached.

    The finished `.onnx` appears atomically (renamed into place), with a `<name>.json` beside it recording how it
    was made. Needs the `train` extra (ultralytics, torch) only when building.
    """
    spec = SPECS[key]
    root = root or cache_dir()
    out = root / f"{spec.name}.onnx"
    if out.exists():
        return out
    with _locked(root / f"{spec.name}.lock"):
        if out.exists():  # another process built it while we waited
            return out
        data = _dataset(root)
        os.environ.setdefault("YOLO_OFFLINE", "1")
        from ultralytics import YOLO  # heavy; only needed when building

        work = Path(tempfile.mkdtemp(dir=root, prefix=f"{spec.name}-work-"))
        try:
            model = YOLO(spec.yaml)
            model.train(
                data=str(data),
                epochs=spec.epochs,
                imgsz=spec.train_imgsz,
                batch=8,
                workers=0,
                device="cpu",
                plots=False,  # plotting fetches a font
                amp=False,  # the AMP check downloads a model
                val=False,
                pretrained=False,
                seed=0,
                deterministic=False,
                project=str(work),
                name="train",
                exist_ok=True,
                verbose=False,
                # Measured on 2 cores: 40 epochs at 160 px take ~70 s and give val mAP50 ~0.6, confidences
                # up to ~0.5 on the test images. The default 3 warm-up epochs and AdamW at its small automatic lr
                # learn far too slowly from scratch in so few iterations.
                optimizer="SGD",
                lr0=0.02,
                warmup_epochs=1,
                close_mosaic=5,
            )
            exported = Path(model.export(format="onnx", **dict(spec.export)))
            tmp_out = root / f".{spec.name}.onnx.tmp"
            shutil.copyfile(exported, tmp_out)
            info = {**spec.describe(), "ultralytics": _version("ultralytics"), "torch": _version("torch")}
            (root / f"{spec.name}.json").write_text(json.dumps(info, indent=2))
            tmp_out.rename(out)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return out


def export_untrained(yaml: str, imgsz: int = 64, root: Path | None = None, **export: object) -> Path:
    """Export an untrained model built from `yaml` (any task: -seg, -cls, -pose, -obb, ...) to ONNX, cached.

    For tests of what the loader must refuse; a few seconds per model the first time.
    """
    root = root or cache_dir()
    stem = Path(yaml).stem + f"_{imgsz}" + "".join(f"_{k}{v}" for k, v in sorted(export.items()))
    out = root / "untrained" / f"{stem}.onnx"
    if out.exists():
        return out
    with _locked(root / "untrained" / f"{stem}.lock"):
        if out.exists():
            return out
        os.environ.setdefault("YOLO_OFFLINE", "1")
        from ultralytics import YOLO  # heavy; only needed when building

        work = Path(tempfile.mkdtemp(dir=out.parent, prefix=f"{stem}-work-"))
        try:
            src = work / f"{stem}.pt"
            model = YOLO(yaml)
            model.save(str(src))
            exported = Path(YOLO(str(src)).export(format="onnx", imgsz=imgsz, **export))
            tmp_out = out.parent / f".{stem}.onnx.tmp"
            shutil.copyfile(exported, tmp_out)
            tmp_out.rename(out)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return out


def rewrite_metadata(src: str | Path, dst: str | Path, changes: dict[str, str | None]) -> Path:
    """Copy an ONNX model with its metadata changed: each key set to the given string, or removed for None.

    `changes={"*": None}` removes all metadata first.
    """
    import onnx  # test-only dependency

    model = onnx.load(str(src))
    props = {p.key: p.value for p in model.metadata_props}
    if "*" in changes:
        props = {}
    for key, value in changes.items():
        if key == "*":
            continue
        if value is None:
            props.pop(key, None)
        else:
            props[key] = value
    del model.metadata_props[:]
    for key, value in props.items():
        p = model.metadata_props.add()
        p.key, p.value = key, value
    dst = Path(dst)
    onnx.save(model, str(dst))
    return dst


def legacy_v5_onnx(
    path: str | Path,
    nc: int = 2,
    imgsz: int = 64,
    batch: int | str = 1,
    with_metadata: bool = True,
    seed: int = 0,
) -> Path:
    """Write a tiny ONNX graph with YOLOv5's legacy output layout `[B, N, 5 + nc]` and return its path.

    Input `images` [batch, 3, imgsz, imgsz] float32 in [0, 1]. The graph is a fixed function of the image, not a
    trained detector: it average-pools the image by 8 (N = (imgsz / 8)² cells), and each cell predicts a box of
    fixed size 16 px centred on the cell (xywh in input pixels), objectness = the cell's mean red value, class
    scores = sigmoid of a fixed linear map of the cell's RGB. So bright areas give confident boxes and results
    are reproducible by a numpy reference (`legacy_v5_reference`).
    `batch` may be an int (static) or a name (dynamic axis). With `with_metadata`, Ultralytics-style metadata
    (stride, task, imgsz, names) is written; without it the loader must be given names and imgsz.
    """
    import onnx  # test-only dependency
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    g = imgsz // 8
    n = g * g
    w_cls = rng.normal(0, 3, size=(3, nc)).astype(np.float32)
    b_cls = rng.normal(0, 1, size=(nc,)).astype(np.float32)
    ys, xs = np.meshgrid(np.arange(g), np.arange(g), indexing="ij")
    centres = np.stack([xs.ravel() * 8 + 4, ys.ravel() * 8 + 4], axis=1).astype(np.float32)  # (n, 2)
    wh = np.full((n, 2), 16.0, np.float32)
    inits = [
        numpy_helper.from_array(w_cls, "w_cls"),
        numpy_helper.from_array(b_cls, "b_cls"),
        numpy_helper.from_array(np.concatenate([centres, wh], axis=1)[None], "xywh"),  # (1, n, 4)
        numpy_helper.from_array(np.array([0, 1, 2], np.int64), "perm"),
        numpy_helper.from_array(np.array([0], np.int64), "c0"),
        numpy_helper.from_array(np.array([1], np.int64), "c1"),
        numpy_helper.from_array(np.array([2], np.int64), "c2"),
    ]
    nodes = [
        helper.make_node("AveragePool", ["images"], ["pooled"], kernel_shape=[8, 8], strides=[8, 8]),  # B,3,g,g
        helper.make_node("Reshape", ["pooled", "shape_cells3"], ["cells_c"]),  # B,3,n
        helper.make_node("Transpose", ["cells_c"], ["cells"], perm=[0, 2, 1]),  # B,n,3
        # starts [0], ends [1], axes [2]: B,n,1, channel 0 = R (the input is RGB)
        helper.make_node("Slice", ["cells", "c0", "c1", "c2"], ["red"]),
        helper.make_node("MatMul", ["cells", "w_cls"], ["logits0"]),
        helper.make_node("Add", ["logits0", "b_cls"], ["logits"]),
        helper.make_node("Sigmoid", ["logits"], ["cls"]),  # B,n,nc
        helper.make_node("Mul", ["red", "zero_b"], ["zeros_b1"]),  # B,n,1 zeros: broadcast xywh to the batch
        helper.make_node("Add", ["xywh", "zeros_b1"], ["xywh_b"]),  # B,n,4
        helper.make_node("Concat", ["xywh_b", "red", "cls"], ["output0"], axis=2),  # B,n,5+nc
    ]
    inits += [
        numpy_helper.from_array(np.array([-1, 3, n], np.int64), "shape_cells3"),
        numpy_helper.from_array(np.zeros((1,), np.float32), "zero_b"),
    ]
    b_dim: int | str = batch
    graph = helper.make_graph(
        nodes,
        "yolov5_legacy_stub",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [b_dim, 3, imgsz, imgsz])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, [b_dim, n, 5 + nc])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    if with_metadata:
        meta = {
            "stride": "8",
            "task": "detect",
            "batch": "1",
            "imgsz": str([imgsz, imgsz]),
            "names": str({i: f"c{i}" for i in range(nc)}),
        }
        for k, v in meta.items():
            p = model.metadata_props.add()
            p.key, p.value = k, v
    onnx.checker.check_model(model)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def legacy_v5_reference(x: np.ndarray, nc: int = 2, seed: int = 0) -> np.ndarray:
    """Numpy twin of `legacy_v5_onnx`'s graph: x (B, 3, s, s) float32 -> (B, N, 5 + nc)."""
    rng = np.random.default_rng(seed)
    w_cls = rng.normal(0, 3, size=(3, nc)).astype(np.float32)
    b_cls = rng.normal(0, 1, size=(nc,)).astype(np.float32)
    b, _, s, _ = x.shape
    g = s // 8
    pooled = x.reshape(b, 3, g, 8, g, 8).mean(axis=(3, 5)).reshape(b, 3, g * g).transpose(0, 2, 1)  # B,n,3
    ys, xs = np.meshgrid(np.arange(g), np.arange(g), indexing="ij")
    centres = np.stack([xs.ravel() * 8 + 4, ys.ravel() * 8 + 4], axis=1).astype(np.float32)
    xywh = np.broadcast_to(np.concatenate([centres, np.full((g * g, 2), 16.0, np.float32)], 1), (b, g * g, 4))
    cls = 1 / (1 + np.exp(-(pooled @ w_cls + b_cls)))
    return np.concatenate([xywh, pooled[..., :1], cls], axis=2).astype(np.float32)
