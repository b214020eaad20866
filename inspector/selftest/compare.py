"""Box-by-box comparison of a model file's detections with its source's: the rules of the self-test (see the
package docstring) and the tolerances per precision."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from inspector.types import Detections

__all__ = ["DUPLICATE_IOU", "MATCH_IOU", "TOLERANCES", "Mismatch", "Tolerance", "compare", "looser"]

MATCH_IOU = 0.1  # pairing floor: below this two boxes are different findings, not one box that moved
# An unpaired box overlapping a paired box on its own side this much is the same finding seen twice there: NMS
# (IoU 0.7) kept two near-equal boxes on one side and one on the other, or a second class whose score sits near
# the first's crossed the floor on one side only. Neither changes what the part is.
DUPLICATE_IOU = 0.5


@dataclass(frozen=True, slots=True)
class Tolerance:
    """How far a file may stray from its source and still behave like it.

    iou: least IoU of a paired box; confidence: largest confidence difference of a pair (also the margin under
    the operating confidence down to which both sides keep boxes).
    """

    iou: float
    confidence: float


# From the shipped models (models/README.md, "int8 and the CPU"): the largest honest difference seen, with room.
TOLERANCES: dict[str, Tolerance] = {
    "fp32": Tolerance(iou=0.9, confidence=0.02),
    "fp16": Tolerance(iou=0.8, confidence=0.05),
    "int8": Tolerance(iou=0.6, confidence=0.15),
}
ORDER = ["fp32", "fp16", "int8"]


def looser(a: str, b: str) -> str:
    """The less precise of two precisions (whose tolerance applies to a comparison of the two)."""
    return max(a, b, key=lambda p: ORDER.index(p) if p in ORDER else len(ORDER))


@dataclass(frozen=True, slots=True)
class Mismatch:
    """One way the tested file differs from the expected boxes on one image.

    kind: "missing", "extra", "confidence" or "box"; expected / actual: confidences (None where there is no box);
    iou: of the pair (None unless paired); severity: how far past the tolerance, for ranking (0 at the limit).
    """

    image: str
    kind: str
    class_name: str
    expected: float | None
    actual: float | None
    iou: float | None
    xyxy: tuple[float, float, float, float]
    severity: float

    def __str__(self) -> str:
        box = "[" + ", ".join(f"{v:.0f}" for v in self.xyxy) + "]"
        e = "-" if self.expected is None else f"{self.expected:.3f}"
        a = "-" if self.actual is None else f"{self.actual:.3f}"
        iou = "" if self.iou is None else f", IoU {self.iou:.2f}"
        return f"{self.image}: {self.kind} {self.class_name} at {box} (expected conf {e}, got {a}{iou})"


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    x1 = np.maximum(box[0], boxes[:, 0])
    y1 = np.maximum(box[1], boxes[:, 1])
    x2 = np.minimum(box[2], boxes[:, 2])
    y2 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-9)


def compare(
    expected: Detections,
    actual: Detections,
    conf: float,
    tolerance: Tolerance,
    names: dict[int, str] | None = None,
    image: str = "",
) -> list[Mismatch]:
    """Box-by-box differences of `actual` from `expected` at operating confidence `conf` (module docstring).

    Both: boxes in the same image's pixels; boxes under `conf - tolerance.confidence` are ignored on both sides.
    """
    names = names or {}
    floor = conf - tolerance.confidence
    exp = expected[expected.confidence >= floor]
    act = actual[actual.confidence >= floor]
    taken = np.zeros(len(act), bool)
    paired = np.zeros(len(exp), bool)
    out: list[Mismatch] = []

    def duplicate(box: np.ndarray, side: Detections, paired_on_side: np.ndarray) -> bool:
        return bool(paired_on_side.any()) and float(_iou(box, side.xyxy[paired_on_side]).max()) >= DUPLICATE_IOU

    def mismatch(kind: str, cls: int, e: float | None, a: float | None, iou: float | None, box: Any, sev: float):
        xyxy = tuple(float(v) for v in box)
        out.append(Mismatch(image, kind, names.get(cls, str(cls)), e, a, iou, xyxy, sev))  # type: ignore[arg-type]

    for i in np.argsort(-exp.confidence, kind="stable"):
        box, e_conf, cls = exp.xyxy[i], float(exp.confidence[i]), int(exp.class_id[i])
        ious = _iou(box, act.xyxy) if len(act) else np.zeros(0)
        ious[(act.class_id != cls) | taken] = -1.0
        j = int(np.argmax(ious)) if ious.size else -1
        if j < 0 or ious[j] < MATCH_IOU:
            if e_conf >= conf and not duplicate(box, exp, paired):
                mismatch("missing", cls, e_conf, None, None, box, e_conf - floor)
            continue
        taken[j] = paired[i] = True
        a_conf, iou = float(act.confidence[j]), float(ious[j])
        if abs(a_conf - e_conf) > tolerance.confidence:
            mismatch("confidence", cls, e_conf, a_conf, iou, box, abs(a_conf - e_conf) - tolerance.confidence)
        if iou < tolerance.iou and max(e_conf, a_conf) >= conf:
            mismatch("box", cls, e_conf, a_conf, iou, box, tolerance.iou - iou)
    for j in np.flatnonzero(~taken):
        a_conf = float(act.confidence[j])
        if a_conf >= conf and not duplicate(act.xyxy[j], act, taken):
            mismatch("extra", int(act.class_id[j]), None, a_conf, None, act.xyxy[j], a_conf - floor)
    return out
