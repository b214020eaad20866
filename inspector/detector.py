"""ONNX object detector that behaves like Ultralytics' `YOLO(model.onnx).predict`, without torch or ultralytics.

Pipeline of one batch (each stage callable on its own, so the pipeline can overlap them across threads):

1. `preprocess(images)`: letterbox each BGR uint8 image to the model input size (aspect kept, centred, pad 114,
   `cv2.INTER_LINEAR`), BGR -> RGB, /255 as float32, NCHW, into a buffer taken from a pool -> `Prepared`.
2. `infer(prepared)`: one onnxruntime run -> the raw output array.
3. `postprocess(raw, prepared)`: decode the layout, confidence filter, class-aware NMS (torchvision semantics,
   Ultralytics' class offset), scale boxes back to each original image and clip -> one `Detections` per image.

Output layouts (`OnnxDetector.layout`):
- "v8":  `[B, 4 + nc, N]`: cx, cy, w, h in input pixels then per-class scores (YOLOv8 / YOLO11 / YOLO26 default).
- "v5":  `[B, N, 5 + nc]`: cx, cy, w, h, objectness, per-class scores (YOLOv5 legacy export); score = obj * cls.
- "e2e": `[B, N, 6]`: x1, y1, x2, y2, score, class in input pixels, already de-duplicated (YOLOv10 / YOLO26 NMS-free
  head, `yolo export nms=False`); only the confidence filter and `max_det` apply.

Input buffers: each `Prepared` owns one buffer from the detector's pool until it is released, which
`postprocess` does (or call `Prepared.release()` yourself when a batch is abandoned, e.g. inference failed; an
unreleased buffer is simply garbage-collected and the pool allocates a new one). So the pipeline may preprocess
batch k+1 while batch k is still inferring: the two never share memory.

Letterbox size: the model's input size from the ONNX metadata (`imgsz`), always the full size (Ultralytics does the
same for every model with a static input shape, the default `yolo export`). For a model exported with
`dynamic=True`, Ultralytics' `predict` instead pads only to the next stride multiple when all images of a batch have
the same shape (`rect`); `rect=True` here does the same, which is faster for wide images.

This module must not import torch or ultralytics (the edge runtime does not have them).
"""

from __future__ import annotations

import ast
import hashlib
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
import onnxruntime as ort

from inspector.imageops import as_bgr
from inspector.types import Detections

if TYPE_CHECKING:
    from inspector.config import ModelConfig

__all__ = [
    "PROVIDERS",
    "BufferPool",
    "ModelError",
    "OnnxDetector",
    "Prepared",
    "letterbox_params",
    "load_detector",
    "nms",
    "sha256_file",
]

log = logging.getLogger(__name__)

# Short provider names (config / CLI) -> onnxruntime provider names.
PROVIDERS: dict[str, str] = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
}
PAD_VALUE = 114  # Ultralytics' letterbox grey
MAX_WH = 7680  # Ultralytics' per-class box offset for class-aware NMS in one pass
MAX_NMS = 30000  # Ultralytics keeps at most this many candidates (highest scores) before NMS
_OTHER_TASKS = {"segment": "segmentation", "classify": "classification", "pose": "pose", "obb": "oriented-box (obb)"}


class ModelError(ValueError):
    """The model file cannot be used as a detector; the message says why and what to do."""


# ------------------------------------------------------------------------------------------------------ letterbox
@dataclass(frozen=True, slots=True)
class LetterboxParams:
    """How one image maps into the network input.

    new_unpad: (w, h) of the resized image inside the input; left/top: padding before it, in input pixels;
    gain_x/gain_y: resized / original size per axis (what Ultralytics' `scale_boxes` divides by).
    """

    new_unpad: tuple[int, int]
    left: int
    top: int
    gain_x: float
    gain_y: float


def letterbox_params(shape: tuple[int, int], new_shape: tuple[int, int]) -> LetterboxParams:
    """Ultralytics `LetterBox.get_params` (centred, scale-up allowed) plus `scale_boxes`' gains.

    shape: original (h, w); new_shape: network input (h, w). Rounding follows Ultralytics exactly, including the
    "- 0.1" that puts the odd padding pixel on the bottom/right.
    """
    h, w = shape
    r = min(new_shape[0] / h, new_shape[1] / w)
    new_w, new_h = max(round(w * r), 1), max(round(h * r), 1)
    dw, dh = (new_shape[1] - new_w) / 2, (new_shape[0] - new_h) / 2
    return LetterboxParams((new_w, new_h), round(dw - 0.1), round(dh - 0.1), new_w / w, new_h / h)


def rect_shape(shape: tuple[int, int], imgsz: tuple[int, int], stride: int) -> tuple[int, int]:
    """Ultralytics' `LetterBox(auto=True)` input size: the resized image padded up to a multiple of `stride`.

    shape: original (h, w); imgsz: (h, w) bound; returns the (h, w) network input.
    """
    h, w = shape
    r = min(imgsz[0] / h, imgsz[1] / w)
    new_w, new_h = max(round(w * r), 1), max(round(h * r), 1)
    return new_h + (imgsz[0] - new_h) % stride, new_w + (imgsz[1] - new_w) % stride


# ------------------------------------------------------------------------------------------------------ buffers
class BufferPool:
    """Free list of flat input buffers of one size and dtype; thread-safe.

    `acquire()` hands out a free buffer or allocates a new one (never blocks, never shares a buffer that is in
    use); `release()` takes it back, keeping at most `keep` spare buffers.
    """

    def __init__(self, size: int, dtype: np.dtype, keep: int = 4) -> None:
        self.size = size
        self.dtype = np.dtype(dtype)
        self.keep = keep
        self._free: list[np.ndarray] = []
        self._lock = threading.Lock()
        self.allocated = 0  # buffers created so far (a growing number means buffers are not being released)

    def acquire(self) -> np.ndarray:
        with self._lock:
            if self._free:
                return self._free.pop()
            self.allocated += 1
        return np.empty(self.size, self.dtype)

    def release(self, buf: np.ndarray) -> None:
        with self._lock:
            if len(self._free) < self.keep:
                self._free.append(buf)


@dataclass(eq=False)
class Prepared:
    """A preprocessed batch.

    tensor: (B, 3, H, W) float32 (float16 for a half model) network input, a view of a pooled buffer; B is the
        number of images, or the model's static batch size (extra rows unused).
    n: number of real images.
    params: per image `LetterboxParams`; orig_shapes: per image original (h, w).
    input_hw: (H, W) of `tensor`.
    """

    tensor: np.ndarray
    n: int
    params: list[LetterboxParams]
    orig_shapes: list[tuple[int, int]]
    input_hw: tuple[int, int]
    _buffer: np.ndarray | None = field(default=None, repr=False)
    _pool: BufferPool | None = field(default=None, repr=False)

    def release(self) -> None:
        """Give the buffer back to the pool (idempotent). `tensor` must not be used afterwards."""
        buf, self._buffer = self._buffer, None
        if buf is not None and self._pool is not None:
            self._pool.release(buf)

    @property
    def released(self) -> bool:
        return self._buffer is None


# ------------------------------------------------------------------------------------------------------ NMS
def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy NMS with torchvision's semantics; returns kept indices, highest score first.

    boxes: (n, 4) float32 xyxy; scores: (n,) float32. Ties in score keep their input order (stable sort, as
    torchvision); a box is suppressed when its IoU with a kept box is strictly greater than `iou_threshold`.
    """
    n = boxes.shape[0]
    if n == 0:
        return np.zeros(0, np.int64)
    order = np.argsort(-scores, kind="stable")
    x1, y1, x2, y2 = (boxes[:, k] for k in range(4))
    areas = (x2 - x1) * (y2 - y1)
    keep: list[int] = []
    while order.size:
        i = order[0]
        keep.append(int(i))
        if order.size == 1:
            break
        rest = order[1:]
        w = np.maximum(np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]), np.float32(0))
        h = np.maximum(np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]), np.float32(0))
        inter = w * h
        iou = inter / (areas[i] + areas[rest] - inter)
        order = rest[~(iou > iou_threshold)]  # NaN (two empty boxes) keeps the box, like torchvision
    return np.asarray(keep, np.int64)


# ------------------------------------------------------------------------------------------------------ detector
def _parse_metadata(raw: dict[str, str]) -> dict[str, Any]:
    """Ultralytics writes every value with `str()`; turn the known ones back into Python values."""
    meta: dict[str, Any] = dict(raw)
    for key in ("stride", "batch", "channels"):
        if key in meta:
            try:
                meta[key] = int(meta[key])
            except ValueError:
                meta.pop(key)
    for key in ("imgsz", "names", "args", "end2end", "kpt_shape"):
        if key in meta and isinstance(meta[key], str):
            try:
                meta[key] = ast.literal_eval(meta[key])
            except (ValueError, SyntaxError):
                meta.pop(key)
    return meta


def _hw(value: Any) -> tuple[int, int]:
    """imgsz as (h, w) from an int or a 1-/2-sequence."""
    if isinstance(value, int):
        return value, value
    seq = [int(v) for v in value]
    return (seq[0], seq[0]) if len(seq) == 1 else (seq[0], seq[1])


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes (the `model_sha256` of every verdict)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _resolve_providers(asked: Sequence[str]) -> list[str]:
    """Map short names to onnxruntime names; drop (with a warning) those this onnxruntime build lacks; CPU last."""
    available = set(ort.get_available_providers())
    chosen: list[str] = []
    for name in asked:
        full = PROVIDERS.get(name.lower(), name)
        if full not in available:
            log.warning(
                "execution provider %r (%s) is not available in this onnxruntime (has %s); falling back to CPU",
                name,
                full,
                ", ".join(sorted(available)),
            )
            continue
        if full not in chosen:
            chosen.append(full)
    if "CPUExecutionProvider" not in chosen:
        chosen.append("CPUExecutionProvider")
    return chosen


class OnnxDetector:
    """A YOLO detection model in ONNX, run with onnxruntime.

    path: the .onnx file. providers: "cpu", "cuda", "tensorrt", "openvino" (or onnxruntime names), in preference
    order; missing ones fall back to CPU with a warning. threads: onnxruntime intra-op threads (0 = its default).
    spinning: let onnxruntime's intra-op threads busy-wait for work (its default). False makes them sleep between
    operators: a little slower per frame, but they no longer take the cores from the pipeline's own threads, which
    shortens the latency tail (bench/pipeline-results.md). Irrelevant for a single-thread session.
    conf / iou / max_det: defaults for `detect` / `postprocess` (Ultralytics': 0.25, 0.7, 300).
    names / imgsz (h, w) / stride: fallbacks for a model without Ultralytics metadata; the metadata wins, and a
    value here that disagrees with it is logged. max_batch: most images in one run for a dynamic batch axis.
    rect: for models with dynamic H/W, pad each batch only to the next stride multiple (Ultralytics' `predict` on
    a `dynamic=True` export does this); otherwise always the full `imgsz`.
    layout: force "v8" / "v5" / "e2e" when the output shape alone is ambiguous (nc = 1 without metadata).
    warmup: run one batch at load so the first real frame does not pay for lazy initialisation.

    Raises `ModelError` when the file is missing, is not ONNX, is not a detection model, has an input this class
    cannot feed, or its metadata disagrees with its graph.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        providers: Sequence[str] = ("cpu",),
        threads: int = 0,
        spinning: bool = True,
        conf: float = 0.25,
        iou: float = 0.7,
        max_det: int = 300,
        names: dict[int, str] | None = None,
        imgsz: tuple[int, int] | int | None = None,
        stride: int | None = None,
        max_batch: int = 8,
        warmup: bool = True,
        rect: bool = False,
        layout: str | None = None,
    ) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise ModelError(f"model file not found: {self.path}")
        if not self.path.is_file():
            raise ModelError(f"model path is not a file: {self.path}")
        if self.path.suffix.lower() != ".onnx":
            log.warning("model file %s does not end in .onnx; trying to load it as ONNX anyway", self.path)
        if not 0.0 <= conf <= 1.0 or not 0.0 < iou <= 1.0 or max_det < 1 or max_batch < 1:
            raise ValueError(f"bad detector settings: conf={conf} iou={iou} max_det={max_det} max_batch={max_batch}")
        self.conf, self.iou, self.max_det, self.rect = float(conf), float(iou), int(max_det), rect
        self.sha256 = sha256_file(self.path)

        options = ort.SessionOptions()
        options.intra_op_num_threads = max(0, int(threads))
        if not spinning:
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3  # onnxruntime's own warnings go to stderr unformatted; we log our own
        self.requested_providers: list[str] = [PROVIDERS.get(p.lower(), p) for p in providers]
        wanted = _resolve_providers(providers)
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=wanted)
        except Exception as exc:  # onnxruntime raises its own exception types (InvalidProtobuf, Fail, ...)
            raise ModelError(
                f"{self.path} is not a loadable ONNX model ({type(exc).__name__}: {str(exc).strip()[:300]}); "
                "export one with `yolo export model=best.pt format=onnx` or `inspector export`"
            ) from exc
        self.providers: list[str] = list(self.session.get_providers())
        for p in wanted:
            if p not in self.providers:
                log.warning("execution provider %s failed to initialise; running on %s", p, self.providers)

        meta_raw = self.session.get_modelmeta().custom_metadata_map
        self.metadata: dict[str, Any] = _parse_metadata(dict(meta_raw))
        self._check_task()
        self._read_input(imgsz, stride)
        self.precision: str = self._read_precision()
        self.names: dict[int, str] = self._read_names(names)
        self.nc = len(self.names)
        self.layout: str = self._read_output(layout)
        self.max_batch: int = self.static_batch if self.static_batch is not None else int(max_batch)
        max_h, max_w = self.imgsz
        self._pool = BufferPool(self.max_batch * 3 * max_h * max_w, self.input_dtype)
        self._canvas = threading.local()  # per-thread uint8 letterbox canvas, reused between calls
        if warmup:
            self.warmup()

    # ---------------------------------------------------------------------------------------------- loading
    def _check_task(self) -> None:
        task = self.metadata.get("task", "detect")
        if task in _OTHER_TASKS:
            raise ModelError(
                f"{self.path} is a {_OTHER_TASKS[task]} model (metadata task={task!r}); inspector needs a detection "
                "model (task 'detect')"
            )
        if task != "detect":
            raise ModelError(f"{self.path}: unknown task {task!r} in the metadata; inspector needs 'detect'")
        self.task = "detect"
        outputs = self.session.get_outputs()
        if len(outputs) != 1:
            shapes = ", ".join(f"{o.name}{o.shape}" for o in outputs)
            kind = "a segmentation model (boxes + mask prototypes)" if len(outputs) == 2 else "not a detector"
            raise ModelError(
                f"{self.path} has {len(outputs)} outputs ({shapes}): {kind}; a detection model has exactly one"
            )
        if len(outputs[0].shape) == 2:
            raise ModelError(
                f"{self.path} has a 2-D output {outputs[0].shape}: a classification model; inspector needs a detector"
            )

    def _read_input(self, imgsz: tuple[int, int] | int | None, stride: int | None) -> None:
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            raise ModelError(f"{self.path} has {len(inputs)} inputs; a YOLO detector has one image input")
        inp = inputs[0]
        self.input_name = inp.name
        dtypes = {"tensor(float)": np.float32, "tensor(float16)": np.float16}
        if inp.type not in dtypes:
            raise ModelError(f"{self.path}: input {inp.name!r} has type {inp.type}; expected float32 or float16")
        self.input_dtype = np.dtype(dtypes[inp.type])
        shape = list(inp.shape)
        if len(shape) != 4:
            raise ModelError(f"{self.path}: input {inp.name!r} has shape {shape}; expected [batch, 3, height, width]")
        b, c, h, w = shape
        if isinstance(c, int) and c != 3:
            raise ModelError(
                f"{self.path}: input {inp.name!r} has {c} channels (shape {shape}); inspector feeds 3-channel images"
            )
        if isinstance(b, int) and b < 1:
            raise ModelError(f"{self.path}: input {inp.name!r} has batch size {b} (shape {shape})")
        self.static_batch: int | None = b if isinstance(b, int) else None
        self.dynamic_hw = not (isinstance(h, int) and isinstance(w, int))
        if isinstance(h, int) != isinstance(w, int):
            raise ModelError(f"{self.path}: input shape {shape} has one fixed and one dynamic side; cannot feed it")

        meta_imgsz = _hw(self.metadata["imgsz"]) if "imgsz" in self.metadata else None
        given = _hw(imgsz) if imgsz is not None else None
        if not self.dynamic_hw:
            graph_hw = (int(h), int(w))
            if meta_imgsz is not None and meta_imgsz != graph_hw:
                raise ModelError(
                    f"{self.path}: metadata imgsz {list(meta_imgsz)} disagrees with the graph's input {shape}"
                )
            if given is not None and given != graph_hw:
                raise ModelError(
                    f"{self.path}: configured imgsz {list(given)} disagrees with the graph's input {shape}"
                )
            self.imgsz: tuple[int, int] = graph_hw
        else:
            chosen = meta_imgsz or given
            if chosen is None:
                raise ModelError(
                    f"{self.path}: input {shape} has dynamic height/width and no imgsz in its metadata; "
                    "set model.imgsz in the config"
                )
            if meta_imgsz is not None and given is not None and given != meta_imgsz:
                log.warning("configured imgsz %s ignored: the model's metadata says %s", given, meta_imgsz)
            self.imgsz = chosen
        if min(self.imgsz) < 1:
            raise ModelError(f"{self.path}: input size {self.imgsz} is not usable")

        meta_stride = self.metadata.get("stride")
        if meta_stride is not None and stride is not None and stride != meta_stride:
            log.warning("configured stride %s ignored: the model's metadata says %s", stride, meta_stride)
        self.stride: int = int(meta_stride or stride or 32)
        if self.dynamic_hw and any(s % self.stride for s in self.imgsz):
            raise ModelError(
                f"{self.path}: imgsz {list(self.imgsz)} is not a multiple of the stride {self.stride}; "
                "the network cannot take that size"
            )

    def _read_precision(self) -> str:
        """fp32 / fp16 / int8 as `inspector export` writes it in the metadata; else fp16 for a half input, else
        fp32 (a file from elsewhere: Ultralytics' own export does not say)."""
        value = str(self.metadata.get("inspector.precision", "")).lower()
        if value in {"fp32", "fp16", "int8"}:
            return value
        return "fp16" if self.input_dtype == np.float16 else "fp32"

    def _read_names(self, names: dict[int, str] | None) -> dict[int, str]:
        meta_names = self.metadata.get("names")
        if isinstance(meta_names, dict) and meta_names:
            result = {int(k): str(v) for k, v in meta_names.items()}
            if names is not None and {int(k): str(v) for k, v in names.items()} != result:
                log.warning("configured class names ignored: the model's metadata has %s", result)
        elif names:
            result = {int(k): str(v) for k, v in names.items()}
        else:
            raise ModelError(
                f"{self.path} has no class names in its metadata (not an Ultralytics export?); "
                "set model.names in the config"
            )
        if sorted(result) != list(range(len(result))):
            raise ModelError(f"{self.path}: class ids must be 0..nc-1, got {sorted(result)}")
        return result

    def _read_output(self, forced: str | None) -> str:
        out = self.session.get_outputs()[0]
        self.output_name = out.name
        shape = list(out.shape)
        if len(shape) != 3:
            raise ModelError(f"{self.path}: output {out.name!r} has shape {shape}; a detector's output is 3-D")
        _, d1, d2 = shape
        nc = self.nc
        # Ultralytics' own rule: the graph holds NMS when exported end-to-end or with `nms=True`.
        e2e_meta = bool(self.metadata.get("end2end")) or (
            isinstance(self.metadata.get("args"), dict) and self.metadata["args"].get("nms") is True
        )
        candidates = []
        if d1 == 4 + nc:
            candidates.append("v8")
        if d2 == 6:
            candidates.append("e2e")
        if d2 == 5 + nc:
            candidates.append("v5")
        if forced is not None:
            if forced not in {"v8", "v5", "e2e"}:
                raise ValueError(f"layout must be 'v8', 'v5' or 'e2e', not {forced!r}")
            if forced not in candidates:
                raise ModelError(f"{self.path}: output shape {shape} does not fit layout {forced!r} with {nc} classes")
            return forced
        if e2e_meta:
            if "e2e" not in candidates:
                raise ModelError(
                    f"{self.path}: metadata says end-to-end (NMS-free) but the output shape is {shape}, not [B, N, 6]"
                )
            return "e2e"
        if not candidates:
            extra = ""
            if isinstance(d1, int) and d1 > 4 + nc:
                extra = f" ({d1 - 4 - nc} extra channels per box: a pose, obb or segmentation head?)"
            raise ModelError(
                f"{self.path}: output shape {shape} fits none of [B, 4+nc, N], [B, N, 5+nc], [B, N, 6] with the "
                f"{nc} class names {'in the metadata' if 'names' in self.metadata else 'configured'}{extra}; "
                "the metadata (or model.names) disagrees with the graph"
            )
        if candidates == ["e2e", "v5"]:  # nc == 1 and no end2end flag: [B, N, 6] is either
            if "end2end" in self.metadata:  # Ultralytics wrote end2end=False: not end-to-end
                return "v5"
            raise ModelError(
                f"{self.path}: output shape {shape} is either end-to-end or YOLOv5 with one class; pass layout="
            )
        return candidates[0]

    def warmup(self) -> None:
        """Run one batch of grey images so lazy initialisation (memory arenas, kernels, TensorRT) happens now."""
        img = np.full((*self.imgsz, 3), PAD_VALUE, np.uint8)
        n = self.static_batch or 1
        prepared = self.preprocess([img] * n)
        self.postprocess(self.infer(prepared), prepared)

    # ---------------------------------------------------------------------------------------------- stages
    def input_shape_for(self, shapes: Sequence[tuple[int, int]]) -> tuple[int, int]:
        """Network input (H, W) for a batch of images with these original (h, w) shapes."""
        if self.rect and self.dynamic_hw and shapes and len(set(shapes)) == 1:
            return rect_shape(shapes[0], self.imgsz, self.stride)
        return self.imgsz

    def preprocess(self, images: Sequence[np.ndarray]) -> Prepared:
        """Letterbox a batch into a pooled input buffer.

        images: 1..max_batch arrays, each (h, w, 3) uint8 BGR, or (h, w) / (h, w, 1) grey, or (h, w, 4) BGRA.
        Returns a `Prepared` whose `tensor` is (B, 3, H, W), RGB, values in [0, 1].
        """
        n = len(images)
        if n == 0:
            raise ValueError("preprocess needs at least one image")
        if n > self.max_batch:
            raise ValueError(f"{n} images exceed the model's max batch {self.max_batch}; split them (detect() does)")
        bgr = [as_bgr(im) for im in images]
        shapes = [(int(im.shape[0]), int(im.shape[1])) for im in bgr]
        if any(h < 1 or w < 1 for h, w in shapes):
            raise ValueError(f"empty image in batch: shapes {shapes}")
        in_h, in_w = self.input_shape_for(shapes)
        rows = self.static_batch or n
        buf = self._pool.acquire()
        tensor = buf[: rows * 3 * in_h * in_w].reshape(rows, 3, in_h, in_w)
        canvas = getattr(self._canvas, "array", None)
        if canvas is None or canvas.shape[0] < in_h or canvas.shape[1] < in_w:
            canvas = self._canvas.array = np.empty((self.imgsz[0], self.imgsz[1], 3), np.uint8)
        view = canvas[:in_h, :in_w]
        params = []
        for i, im in enumerate(bgr):
            p = letterbox_params(shapes[i], (in_h, in_w))
            nw, nh = p.new_unpad
            view.fill(PAD_VALUE)  # memset of ~300 kB: cheaper than padding four borders separately
            if (nw, nh) == (shapes[i][1], shapes[i][0]):
                view[p.top : p.top + nh, p.left : p.left + nw] = im
            else:
                view[p.top : p.top + nh, p.left : p.left + nw] = cv2.resize(
                    im, (nw, nh), interpolation=cv2.INTER_LINEAR
                )
            # BGR -> RGB and HWC -> CHW in one strided read; float32 division by 255 exactly as torch's div_(255).
            np.divide(
                view[:, :, ::-1].transpose(2, 0, 1), np.float32(255), out=tensor[i], dtype=np.float32, casting="unsafe"
            )
            params.append(p)
        # Rows n..rows of a static batch hold stale data: their outputs are dropped, batch rows are independent.
        return Prepared(tensor, n, params, shapes, (in_h, in_w), buf, self._pool)

    def infer(self, prepared: Prepared) -> np.ndarray:
        """One onnxruntime run. Returns the raw output for the real images only: (n, 4+nc, N), (n, N, 5+nc) or
        (n, N, 6) depending on `layout`, float32. Releases the GIL while onnxruntime runs."""
        if prepared.released:
            raise ValueError("this Prepared batch was already released (postprocessed); preprocess again")
        raw = self.session.run([self.output_name], {self.input_name: prepared.tensor})[0]
        if raw.dtype != np.float32:
            raw = raw.astype(np.float32)
        return raw[: prepared.n]

    def postprocess(
        self, raw: np.ndarray, prepared: Prepared, conf: float | None = None, iou: float | None = None
    ) -> list[Detections]:
        """Decode, filter (score > conf), class-aware NMS (IoU > iou suppresses), at most `max_det` per image,
        boxes back to original pixels, clipped. Releases `prepared`'s buffer. Returns one `Detections` per image."""
        conf = self.conf if conf is None else float(conf)
        iou = self.iou if iou is None else float(iou)
        try:
            out = []
            for i in range(prepared.n):
                xyxy, score, cls = self._decode(raw[i], conf, iou)
                out.append(self._to_original(xyxy, score, cls, prepared.params[i], prepared.orig_shapes[i]))
            return out
        finally:
            prepared.release()

    def detect(
        self, images: Sequence[np.ndarray], conf: float | None = None, iou: float | None = None
    ) -> list[Detections]:
        """Preprocess, infer and postprocess any number of images (in runs of at most `max_batch`).

        images: BGR uint8 (h, w, 3) (grey and BGRA accepted). Returns one `Detections` per image, boxes in the
        original image's pixels.
        """
        results: list[Detections] = []
        for start in range(0, len(images), self.max_batch):
            prepared = self.preprocess(images[start : start + self.max_batch])
            try:
                raw = self.infer(prepared)
            except BaseException:
                prepared.release()
                raise
            results.extend(self.postprocess(raw, prepared, conf, iou))
        return results

    __call__ = detect

    # ---------------------------------------------------------------------------------------------- decoding
    def _decode(self, pred: np.ndarray, conf: float, iou: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One image's raw output -> (xyxy (k, 4) float32 in input pixels, score (k,), class (k,) int64)."""
        if self.layout == "e2e":  # (N, 6): already de-duplicated and sorted by score
            keep = np.flatnonzero(pred[:, 4] > conf)[: self.max_det]
            sel = pred[keep]
            return sel[:, :4], sel[:, 4], sel[:, 5].astype(np.int64)
        if self.layout == "v8":  # (4 + nc, N)
            scores_all = pred[4:]
            best = scores_all.max(axis=0)
            idx = np.flatnonzero(best > conf)
            if idx.size == 0:
                return np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64)
            cls = scores_all[:, idx].argmax(axis=0)
            score = best[idx]
            xywh = pred[:4, idx].T
        else:  # "v5": (N, 5 + nc); objectness gates first, then score = obj * class score (YOLOv5's NMS)
            cand = pred[pred[:, 4] > conf]
            cls_scores = cand[:, 5:] * cand[:, 4:5]
            cls = cls_scores.argmax(axis=1)
            score = cls_scores[np.arange(cls.size), cls]
            ok = score > conf
            cls, score, xywh = cls[ok], score[ok], cand[ok, :4]
            if score.size == 0:
                return np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64)
        xyxy = np.empty_like(xywh)
        half = xywh[:, 2:4] / 2
        xyxy[:, 0:2] = xywh[:, 0:2] - half
        xyxy[:, 2:4] = xywh[:, 0:2] + half
        if score.size > MAX_NMS:
            top = np.argsort(-score, kind="stable")[:MAX_NMS]
            xyxy, score, cls = xyxy[top], score[top], cls[top]
        # Shift each class by MAX_WH px so one pass of NMS never compares two classes (Ultralytics does the same,
        # in float32, so the IoUs and hence the kept boxes match it bit for bit).
        offset = (cls.astype(np.float32) * np.float32(MAX_WH))[:, None]
        keep = nms(xyxy + offset, score, iou)[: self.max_det]
        return xyxy[keep], score[keep], cls[keep].astype(np.int64)

    @staticmethod
    def _to_original(
        xyxy: np.ndarray, score: np.ndarray, cls: np.ndarray, p: LetterboxParams, shape: tuple[int, int]
    ) -> Detections:
        """Input-pixel boxes -> original-image pixels (Ultralytics `scale_boxes`: remove pad, divide by the gain per
        axis, clip to the image)."""
        boxes = xyxy.astype(np.float32, copy=True)
        boxes[:, [0, 2]] = (boxes[:, [0, 2]] - np.float32(p.left)) / np.float32(p.gain_x)
        boxes[:, [1, 3]] = (boxes[:, [1, 3]] - np.float32(p.top)) / np.float32(p.gain_y)
        h, w = shape
        boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, w)
        boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, h)
        return Detections(boxes, score.astype(np.float32), cls)

    # ---------------------------------------------------------------------------------------------- info
    def describe(self) -> dict[str, Any]:
        """JSON-ready summary for logs, the dashboard and model cards."""
        return {
            "path": str(self.path),
            "sha256": self.sha256,
            "task": self.task,
            "layout": self.layout,
            "imgsz": list(self.imgsz),
            "stride": self.stride,
            "names": {str(k): v for k, v in self.names.items()},
            "max_batch": self.max_batch,
            "dynamic_batch": self.static_batch is None,
            "dynamic_hw": self.dynamic_hw,
            "providers": self.providers,
            "requested_providers": self.requested_providers,
            "precision": self.precision,
            "input_dtype": str(self.input_dtype),
        }

    def __repr__(self) -> str:
        return (
            f"OnnxDetector({self.path.name}, layout={self.layout}, imgsz={self.imgsz}, nc={self.nc}, "
            f"max_batch={self.max_batch}, providers={self.providers})"
        )


def load_detector(config: ModelConfig, **overrides: Any) -> OnnxDetector:
    """Build an `OnnxDetector` from a `ModelConfig`; keyword `overrides` (e.g. max_batch, warmup) win."""
    kwargs: dict[str, Any] = {
        "providers": list(config.providers),
        "threads": config.threads,
        "spinning": config.spinning,
        "conf": config.conf,
        "iou": config.iou,
        "max_det": config.max_det,
        "names": config.names,
        "imgsz": config.imgsz,
        "stride": config.stride,
    }
    kwargs.update(overrides)
    return OnnxDetector(config.path, **kwargs)
