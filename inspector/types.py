"""Central types shared by every stage: `Frame`, `Detections`, `Thresholds`, `Verdict`, `Decision`.

Units: pixels in the original (camera) image, times in nanoseconds of `time.monotonic_ns()` unless a name
says otherwise. Arrays are numpy; shapes are given in the docstrings.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = [
    "FAILSAFE_REASONS",
    "ClassThresholds",
    "Decision",
    "Detections",
    "Frame",
    "FrameSource",
    "SourceError",
    "Thresholds",
    "Timings",
    "Verdict",
]


@dataclass(slots=True)
class Frame:
    """One camera image of one part.

    image: (H, W, 3) uint8, BGR (OpenCV order).
    part_id: the part this frame shows (counted up in free-run, given by the PLC when triggered).
    captured_ns: `time.monotonic_ns()` when the frame was grabbed.
    deadline_ns: monotonic time by which the part's verdict must be out (it reaches the reject gate), or None.
    truth: ground truth where the source knows it (synthetic line, labelled folder), else None.
    """

    image: np.ndarray
    part_id: int
    camera_id: str = "cam0"
    captured_ns: int = 0
    deadline_ns: int | None = None
    truth: Any = None


class Detections:
    """Detected boxes as a struct of parallel numpy arrays (supervision style).

    xyxy: (n, 4) float32, corners x1, y1, x2, y2 in original-image pixels.
    confidence: (n,) float32 in [0, 1].
    class_id: (n,) int64.
    Indexing with a boolean mask, an integer array or a slice returns a new `Detections`.
    """

    __slots__ = ("class_id", "confidence", "xyxy")

    def __init__(self, xyxy: np.ndarray, confidence: np.ndarray, class_id: np.ndarray) -> None:
        xyxy = np.asarray(xyxy, dtype=np.float32)
        confidence = np.asarray(confidence, dtype=np.float32)
        class_id = np.asarray(class_id, dtype=np.int64)
        if xyxy.ndim != 2 or xyxy.shape[1] != 4:
            if xyxy.size == 0:
                xyxy = xyxy.reshape(0, 4)
            else:
                raise ValueError(f"xyxy must have shape (n, 4), got {xyxy.shape}")
        n = xyxy.shape[0]
        if confidence.shape != (n,):
            raise ValueError(f"confidence must have shape ({n},), got {confidence.shape}")
        if class_id.shape != (n,):
            raise ValueError(f"class_id must have shape ({n},), got {class_id.shape}")
        self.xyxy = xyxy
        self.confidence = confidence
        self.class_id = class_id

    @classmethod
    def empty(cls) -> Detections:
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64))

    def __len__(self) -> int:
        return int(self.xyxy.shape[0])

    def __getitem__(self, index: np.ndarray | slice | int) -> Detections:
        if isinstance(index, int | np.integer):
            index = slice(int(index), int(index) + 1 or None)
        return Detections(self.xyxy[index], self.confidence[index], self.class_id[index])

    def __iter__(self):  # type: ignore[no-untyped-def]
        for i in range(len(self)):
            yield self.xyxy[i], float(self.confidence[i]), int(self.class_id[i])

    def __repr__(self) -> str:
        return f"Detections(n={len(self)})"

    @property
    def area(self) -> np.ndarray:
        """(n,) float32 box areas in pixels²."""
        wh = np.clip(self.xyxy[:, 2:4] - self.xyxy[:, 0:2], 0, None)
        return wh[:, 0] * wh[:, 1]

    @property
    def center(self) -> np.ndarray:
        """(n, 2) float32 box centres in pixels."""
        return (self.xyxy[:, 0:2] + self.xyxy[:, 2:4]) / 2

    @staticmethod
    def concat(items: list[Detections]) -> Detections:
        if not items:
            return Detections.empty()
        return Detections(
            np.concatenate([d.xyxy for d in items]),
            np.concatenate([d.confidence for d in items]),
            np.concatenate([d.class_id for d in items]),
        )

    @classmethod
    def from_list(cls, rows: list[dict[str, Any]]) -> Detections:
        """The inverse of `to_list` (`class_name` is not needed)."""
        if not rows:
            return cls.empty()
        return cls(
            np.array([r["xyxy"] for r in rows], np.float32),
            np.array([r["confidence"] for r in rows], np.float32),
            np.array([r["class_id"] for r in rows], np.int64),
        )

    def to_list(self, names: dict[int, str] | None = None) -> list[dict[str, Any]]:
        """JSON-ready list: `[{class_id, class_name, confidence, xyxy}]`, the one JSON shape of detections."""
        names = names or {}
        return [
            {
                "class_id": int(c),
                "class_name": names.get(int(c), str(int(c))),
                "confidence": round(float(s), 5),
                "xyxy": [round(float(v), 2) for v in box],
            }
            for box, s, c in zip(self.xyxy, self.confidence, self.class_id, strict=True)
        ]


class Decision(enum.StrEnum):
    PASS = "pass"
    REJECT = "reject"


class ClassThresholds(BaseModel):
    """Rules for one defect class. A detection counts as a defect when all of them hold."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_confidence: float = Field(0.25, ge=0.0, le=1.0, description="keep detections at or above this score")
    min_area_px: float = Field(0.0, ge=0.0, description="ignore boxes smaller than this, in pixels²")
    max_count: int = Field(
        0, ge=0, description="reject only when more than this many kept defects of the class are found"
    )
    enabled: bool = Field(True, description="false: this class never rejects")


class Thresholds(BaseModel):
    """Versioned decision rules: per-class thresholds, a region of interest, and what to do on errors.

    `classes` is keyed by class name; a class not listed uses `default`. The object is immutable: a change is
    a new object with a new version, swapped in atomically by its holder.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: int = Field(1, ge=1)
    default: ClassThresholds = ClassThresholds()
    classes: dict[str, ClassThresholds] = Field(default_factory=dict)
    roi: list[tuple[float, float]] | None = Field(
        None, description="polygon in image pixels; detections whose centre lies outside are ignored"
    )
    on_error: Decision = Field(default=Decision.REJECT, description="decision for a part that could not be inspected")

    @field_validator("roi")
    @classmethod
    def _roi_is_polygon(cls, roi: list[tuple[float, float]] | None) -> list[tuple[float, float]] | None:
        if roi is not None and len(roi) < 3:
            raise ValueError("roi needs at least 3 points")
        return roi

    def for_class(self, name: str) -> ClassThresholds:
        return self.classes.get(name, self.default)


# Reasons of a verdict decided without inspecting the part: missed its deadline, inspection failed, or (with a
# golden reference) the frame did not register to it. Any of them makes the verdict fail-safe.
FAILSAFE_REASONS = ("uninspected", "error", "unregistered")


@dataclass(slots=True)
class Timings:
    """Monotonic timestamps (ns) of one part's way through the pipeline; 0 means "not reached".
    registered_ns: the frame registered to its recipe's reference (0: the recipe has none)."""

    captured_ns: int = 0
    preprocessed_ns: int = 0
    inferred_ns: int = 0
    decided_ns: int = 0
    published_ns: int = 0
    registered_ns: int = 0

    def latency_ms(self) -> float:
        """Capture to decision, in milliseconds."""
        if not self.captured_ns or not self.decided_ns:
            return 0.0
        return (self.decided_ns - self.captured_ns) / 1e6


@dataclass(slots=True)
class Verdict:
    """The one answer for one part.

    reasons: class names that rejected it, or `uninspected` (deadline missed) / `error` (inspection failed) /
    `unregistered` (the frame did not register to the recipe's golden reference): `FAILSAFE_REASONS`.
    detections: everything the model found (after NMS), not only the kept defects; `kept` marks the defects.
    """

    part_id: int
    decision: Decision
    reasons: list[str] = field(default_factory=list)
    detections: Detections = field(default_factory=Detections.empty)
    kept: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    thresholds_version: int = 0
    model_sha256: str = ""
    recipe: str = "default"
    camera_id: str = "cam0"
    seq: int = 0
    deadline_ns: int | None = None
    timings: Timings = field(default_factory=Timings)
    truth: Any = None
    image: np.ndarray | None = None

    @property
    def rejected(self) -> bool:
        return self.decision == Decision.REJECT

    @property
    def failsafe(self) -> bool:
        return any(reason in FAILSAFE_REASONS for reason in self.reasons)

    def defects(self, names: dict[int, str] | None = None) -> list[dict[str, Any]]:
        """The kept defects as `[{class, confidence, xyxy}]`."""
        names = names or {}
        out = []
        for box, score, cid in self.detections[self.kept] if len(self.kept) else []:
            out.append(
                {
                    "class": names.get(cid, str(cid)),
                    "confidence": round(score, 4),
                    "xyxy": [round(float(v), 1) for v in box],
                }
            )
        return out


class SourceError(Exception):
    """A frame source lost its camera (or could not open it). The pipeline reopens it with back-off."""


@runtime_checkable
class FrameSource(Protocol):
    """What the capture thread reads from: a camera, a folder, a video, the synthetic line.

    `read()` blocks until the next frame is due (a source that paces itself, e.g. at a part rate, sleeps here)
    and returns `(image, truth)`: image (H, W, 3) uint8 BGR, truth the ground truth where the source knows it
    (else None). It returns None when a finite stream has ended, and raises `SourceError` when the camera is
    lost; `open()` raises `SourceError` when it cannot (re)connect.
    """

    description: str

    def open(self) -> None: ...

    def read(self) -> tuple[np.ndarray, Any] | None: ...

    def close(self) -> None: ...
