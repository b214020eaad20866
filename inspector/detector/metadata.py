"""What an ONNX file says about itself: Ultralytics' metadata, class names, input and output checks, precision.

Every check raises `ModelError` with a message that says what is wrong and what to do; a configured value that the
metadata overrides is logged. The model's graph is read through onnxruntime's session (`get_inputs`/`get_outputs`).
"""

from __future__ import annotations

import ast
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from inspector.detector.decode import LAYOUTS
from inspector.reference import INPUT_KINDS, REFERENCE_DIFF

if TYPE_CHECKING:
    from onnxruntime import NodeArg

__all__ = [
    "INPUT_METADATA_KEY",
    "InputSpec",
    "ModelError",
    "check_reference",
    "check_task",
    "parse_metadata",
    "read_input",
    "read_input_kind",
    "read_layout",
    "read_names",
    "read_precision",
]

log = logging.getLogger(__name__)

# What the model's images are (`inspector export` writes it; absent: plain camera images). Its one other value is
# REFERENCE_DIFF, the composite of a frame and its registered golden reference (`inspector.reference`, issue 15).
INPUT_METADATA_KEY = "inspector.input"
_OTHER_TASKS = {"segment": "segmentation", "classify": "classification", "pose": "pose", "obb": "oriented-box (obb)"}
_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16}


class ModelError(ValueError):
    """The model file cannot be used as a detector; the message says why and what to do."""


def parse_metadata(raw: dict[str, str]) -> dict[str, Any]:
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


def check_task(path: Path, metadata: dict[str, Any], outputs: Sequence[NodeArg]) -> str:
    """The model's task, which must be "detect" (metadata) with exactly one output of a detector's rank."""
    task = metadata.get("task", "detect")
    if task in _OTHER_TASKS:
        raise ModelError(
            f"{path} is a {_OTHER_TASKS[task]} model (metadata task={task!r}); inspector needs a detection "
            "model (task 'detect')"
        )
    if task != "detect":
        raise ModelError(f"{path}: unknown task {task!r} in the metadata; inspector needs 'detect'")
    if len(outputs) != 1:
        shapes = ", ".join(f"{o.name}{o.shape}" for o in outputs)
        kind = "a segmentation model (boxes + mask prototypes)" if len(outputs) == 2 else "not a detector"
        raise ModelError(f"{path} has {len(outputs)} outputs ({shapes}): {kind}; a detection model has exactly one")
    if len(outputs[0].shape) == 2:
        raise ModelError(
            f"{path} has a 2-D output {outputs[0].shape}: a classification model; inspector needs a detector"
        )
    return "detect"


@dataclass(frozen=True, slots=True)
class InputSpec:
    """The image input as the detector feeds it.

    static_batch: the graph's fixed batch size, None when dynamic; dynamic_hw: height/width are dynamic;
    imgsz: (h, w) letterbox size; stride: the network's largest stride.
    """

    name: str
    dtype: np.dtype
    static_batch: int | None
    dynamic_hw: bool
    imgsz: tuple[int, int]
    stride: int


def read_input(
    path: Path,
    inputs: Sequence[NodeArg],
    metadata: dict[str, Any],
    imgsz: tuple[int, int] | int | None,
    stride: int | None,
) -> InputSpec:
    """Check the one image input and settle imgsz and stride (graph, then metadata, then the configured values)."""
    if len(inputs) != 1:
        raise ModelError(f"{path} has {len(inputs)} inputs; a YOLO detector has one image input")
    inp = inputs[0]
    if inp.type not in _DTYPES:
        raise ModelError(f"{path}: input {inp.name!r} has type {inp.type}; expected float32 or float16")
    shape = list(inp.shape)
    if len(shape) != 4:
        raise ModelError(f"{path}: input {inp.name!r} has shape {shape}; expected [batch, 3, height, width]")
    b, c, h, w = shape
    if isinstance(c, int) and c != 3:
        raise ModelError(
            f"{path}: input {inp.name!r} has {c} channels (shape {shape}); inspector feeds 3-channel images"
        )
    if isinstance(b, int) and b < 1:
        raise ModelError(f"{path}: input {inp.name!r} has batch size {b} (shape {shape})")
    dynamic_hw = not (isinstance(h, int) and isinstance(w, int))
    if isinstance(h, int) != isinstance(w, int):
        raise ModelError(f"{path}: input shape {shape} has one fixed and one dynamic side; cannot feed it")

    meta_imgsz = _hw(metadata["imgsz"]) if "imgsz" in metadata else None
    given = _hw(imgsz) if imgsz is not None else None
    if not dynamic_hw:
        graph_hw = (int(h), int(w))
        if meta_imgsz is not None and meta_imgsz != graph_hw:
            raise ModelError(f"{path}: metadata imgsz {list(meta_imgsz)} disagrees with the graph's input {shape}")
        if given is not None and given != graph_hw:
            raise ModelError(f"{path}: configured imgsz {list(given)} disagrees with the graph's input {shape}")
        size = graph_hw
    else:
        chosen = meta_imgsz or given
        if chosen is None:
            raise ModelError(
                f"{path}: input {shape} has dynamic height/width and no imgsz in its metadata; "
                "set model.imgsz in the config"
            )
        if meta_imgsz is not None and given is not None and given != meta_imgsz:
            log.warning("configured imgsz %s ignored: the model's metadata says %s", given, meta_imgsz)
        size = chosen
    if min(size) < 1:
        raise ModelError(f"{path}: input size {size} is not usable")

    meta_stride = metadata.get("stride")
    if meta_stride is not None and stride is not None and stride != meta_stride:
        log.warning("configured stride %s ignored: the model's metadata says %s", stride, meta_stride)
    net_stride = int(meta_stride or stride or 32)
    if dynamic_hw and any(s % net_stride for s in size):
        raise ModelError(
            f"{path}: imgsz {list(size)} is not a multiple of the stride {net_stride}; "
            "the network cannot take that size"
        )
    static_batch = b if isinstance(b, int) else None
    return InputSpec(inp.name, np.dtype(_DTYPES[inp.type]), static_batch, dynamic_hw, size, net_stride)


def read_precision(metadata: dict[str, Any], input_dtype: np.dtype) -> str:
    """fp32 / fp16 / int8 as `inspector export` writes it in the metadata; else fp16 for a half input, else
    fp32 (a file from elsewhere: Ultralytics' own export does not say)."""
    value = str(metadata.get("inspector.precision", "")).lower()
    if value in {"fp32", "fp16", "int8"}:
        return value
    return "fp16" if input_dtype == np.float16 else "fp32"


def read_names(path: Path, metadata: dict[str, Any], names: dict[int, str] | None) -> dict[int, str]:
    """Class names: the metadata's, else the configured ones; ids must be 0..nc-1."""
    meta_names = metadata.get("names")
    if isinstance(meta_names, dict) and meta_names:
        result = {int(k): str(v) for k, v in meta_names.items()}
        if names is not None and {int(k): str(v) for k, v in names.items()} != result:
            log.warning("configured class names ignored: the model's metadata has %s", result)
    elif names:
        result = {int(k): str(v) for k, v in names.items()}
    else:
        raise ModelError(
            f"{path} has no class names in its metadata (not an Ultralytics export?); set model.names in the config"
        )
    if sorted(result) != list(range(len(result))):
        raise ModelError(f"{path}: class ids must be 0..nc-1, got {sorted(result)}")
    return result


def read_layout(path: Path, output: NodeArg, metadata: dict[str, Any], nc: int, forced: str | None) -> str:
    """The output layout ("v8", "v5" or "e2e") from the output's shape, the metadata and `forced` (`layout=`)."""
    shape = list(output.shape)
    if len(shape) != 3:
        raise ModelError(f"{path}: output {output.name!r} has shape {shape}; a detector's output is 3-D")
    _, d1, d2 = shape
    # Ultralytics' own rule: the graph holds NMS when exported end-to-end or with `nms=True`.
    e2e_meta = bool(metadata.get("end2end")) or (
        isinstance(metadata.get("args"), dict) and metadata["args"].get("nms") is True
    )
    candidates = []
    if d1 == 4 + nc:
        candidates.append("v8")
    if d2 == 6:
        candidates.append("e2e")
    if d2 == 5 + nc:
        candidates.append("v5")
    if forced is not None:
        if forced not in LAYOUTS:
            raise ValueError(f"layout must be 'v8', 'v5' or 'e2e', not {forced!r}")
        if forced not in candidates:
            raise ModelError(f"{path}: output shape {shape} does not fit layout {forced!r} with {nc} classes")
        return forced
    if e2e_meta:
        if "e2e" not in candidates:
            raise ModelError(
                f"{path}: metadata says end-to-end (NMS-free) but the output shape is {shape}, not [B, N, 6]"
            )
        return "e2e"
    if not candidates:
        extra = ""
        if isinstance(d1, int) and d1 > 4 + nc:
            extra = f" ({d1 - 4 - nc} extra channels per box: a pose, obb or segmentation head?)"
        raise ModelError(
            f"{path}: output shape {shape} fits none of [B, 4+nc, N], [B, N, 5+nc], [B, N, 6] with the "
            f"{nc} class names {'in the metadata' if 'names' in metadata else 'configured'}{extra}; "
            "the metadata (or model.names) disagrees with the graph"
        )
    if candidates == ["e2e", "v5"]:  # nc == 1 and no end2end flag: [B, N, 6] is either
        if "end2end" in metadata:  # Ultralytics wrote end2end=False: not end-to-end
            return "v5"
        raise ModelError(f"{path}: output shape {shape} is either end-to-end or YOLOv5 with one class; pass layout=")
    return candidates[0]


def read_input_kind(path: Path, metadata: dict[str, Any]) -> str:
    """What the model wants as its image: "image" (a camera frame) or "reference-diff" (the composite of a frame
    and its registered reference, `inspector.reference`), from the metadata's `inspector.input` (absent: "image")."""
    kind = str(metadata.get(INPUT_METADATA_KEY, "image"))
    if kind not in INPUT_KINDS:
        raise ModelError(
            f"{path}: metadata {INPUT_METADATA_KEY}={kind!r} is not one of {list(INPUT_KINDS)}; "
            "this inspector cannot build that input"
        )
    return kind


def check_reference(path: Path, input_kind: str, reference: bool | None) -> None:
    """Refuse a model that will not get what it needs: a reference model without a reference image, or a plain
    model given one. reference: whether the caller will give one (None: the caller builds the inputs itself)."""
    if reference is None:
        return
    if input_kind == REFERENCE_DIFF and not reference:
        raise ModelError(
            f"{path} is a reference model ({INPUT_METADATA_KEY}: reference-diff): it compares each part with its "
            "golden reference and needs one; name the reference image (a recipe's `reference`, or "
            "`inspector detect --reference IMAGE`, or NAME_test images beside their NAME_temp), or use a plain model"
        )
    if input_kind != REFERENCE_DIFF and reference:
        raise ModelError(
            f"{path} is a plain model (no {INPUT_METADATA_KEY}: reference-diff in its metadata): it inspects each "
            "frame alone and cannot use a reference image; drop the reference or use a reference model"
        )
