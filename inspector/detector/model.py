"""`OnnxDetector`: the onnxruntime session (providers, threads) and the stages of one batch, plus `load_detector`.

`preprocess` letterboxes into a pooled buffer, `infer` runs the session, `postprocess` decodes, runs NMS and maps the
boxes back to each original image; `detect` chains them. This module must not import torch or ultralytics.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
import onnxruntime as ort

from inspector.detector.buffers import BufferPool, Prepared
from inspector.detector.decode import decode
from inspector.detector.letterbox import PAD_VALUE, letterbox_params, rect_shape, scale_boxes
from inspector.detector.metadata import (
    ModelError,
    check_reference,
    check_task,
    parse_metadata,
    read_input,
    read_input_kind,
    read_layout,
    read_names,
    read_precision,
)
from inspector.imageops import as_bgr
from inspector.types import Detections

if TYPE_CHECKING:
    from inspector.config import ModelConfig

__all__ = ["PROVIDERS", "OnnxDetector", "load_detector", "resolve_providers", "sha256_file"]

log = logging.getLogger(__name__)

# Short provider names (config / CLI) -> onnxruntime provider names.
PROVIDERS: dict[str, str] = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
}


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes (the `model_sha256` of every verdict)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def resolve_providers(asked: Sequence[str]) -> list[str]:
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
    reference: whether the caller will give the model a golden reference (`input_kind` "reference-diff" needs one,
    a plain model must not get one); None: no check (a tool that builds its inputs itself).

    Raises `ModelError` when the file is missing, is not ONNX, is not a detection model, has an input this class
    cannot feed, its metadata disagrees with its graph, or it does not match `reference`.
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
        reference: bool | None = None,
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
        wanted = resolve_providers(providers)
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
        self.metadata: dict[str, Any] = parse_metadata(dict(meta_raw))
        self.task: str = check_task(self.path, self.metadata, self.session.get_outputs())
        # "image", or "reference-diff": each image must be `inspector.reference.reference_composite` of a frame and
        # its registered reference, which the caller builds (the detector sees an ordinary 3-channel image).
        self.input_kind: str = read_input_kind(self.path, self.metadata)
        check_reference(self.path, self.input_kind, reference)
        spec = read_input(self.path, self.session.get_inputs(), self.metadata, imgsz, stride)
        self.input_name: str = spec.name
        self.input_dtype: np.dtype = spec.dtype
        self.static_batch: int | None = spec.static_batch
        self.dynamic_hw: bool = spec.dynamic_hw
        self.imgsz: tuple[int, int] = spec.imgsz
        self.stride: int = spec.stride
        self.precision: str = read_precision(self.metadata, self.input_dtype)
        self.names: dict[int, str] = read_names(self.path, self.metadata, names)
        self.nc = len(self.names)
        output = self.session.get_outputs()[0]
        self.output_name: str = output.name
        self.layout: str = read_layout(self.path, output, self.metadata, self.nc, layout)
        self.max_batch: int = self.static_batch if self.static_batch is not None else int(max_batch)
        max_h, max_w = self.imgsz
        self._pool = BufferPool(self.max_batch * 3 * max_h * max_w, self.input_dtype)
        self._canvas = threading.local()  # per-thread uint8 letterbox canvas, reused between calls
        if warmup:
            self.warmup()

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
                xyxy, score, cls = decode(raw[i], self.layout, conf, iou, self.max_det)
                out.append(scale_boxes(xyxy, score, cls, prepared.params[i], prepared.orig_shapes[i]))
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
            "input_kind": self.input_kind,
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
