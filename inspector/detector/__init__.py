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

One job per module:

    letterbox  Ultralytics-identical geometry: `LetterboxParams`, `letterbox_params`, `rect_shape`, `scale_boxes`
    buffers    the input buffer pool and `Prepared`, a letterboxed batch that owns one buffer
    decode     the three output layouts, the confidence filter, class-aware NMS (`nms`)
    metadata   Ultralytics' metadata, class names, input/output checks, precision; `ModelError`
    model      `OnnxDetector` (session, providers, the stages, `describe`), `load_detector`, `sha256_file`

This package must not import torch or ultralytics (the edge runtime does not have them).
"""

from __future__ import annotations

from inspector.detector.buffers import BufferPool, Prepared
from inspector.detector.decode import MAX_NMS, MAX_WH, nms
from inspector.detector.letterbox import PAD_VALUE, LetterboxParams, letterbox_params, rect_shape
from inspector.detector.metadata import ModelError
from inspector.detector.model import PROVIDERS, OnnxDetector, load_detector, sha256_file

__all__ = [
    "MAX_NMS",
    "MAX_WH",
    "PAD_VALUE",
    "PROVIDERS",
    "BufferPool",
    "LetterboxParams",
    "ModelError",
    "OnnxDetector",
    "Prepared",
    "letterbox_params",
    "load_detector",
    "nms",
    "rect_shape",
    "sha256_file",
]
