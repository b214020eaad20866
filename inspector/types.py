"""Central types shared by every stage: `Frame`, `Detections` (and `DetectionRecord`, one detection written out),
`Thresholds`, `Verdict`, `Decision`, and the fail-safe rule (`is_failsafe`).

Units: pixels in the original (camera) image, times in nanoseconds of `time.monotonic_ns()` unless a name
says otherwise. Arrays are numpy; shapes are given in the docstrings.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

if TYPE_CHECKING:
    from inspector.verdict import VerdictRecord

__all__ = [
    "FAILSAFE_REASONS",
    "ClassThresholds",
    "Decision",
    "DecisionFacts",
    "DetectionRecord",
    "Detections",
    "Frame",
    "FrameSource",
    "SourceError",
    "Thresholds",
    "Timings",
    "Verdict",
    "is_failsafe",
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
    def from_records(cls, records: Iterable[DetectionRecord]) -> Detections:
        """Detections from their records (names and `kept` are not needed)."""
        records = list(records)
        if not records:
            return cls.empty()
        return cls(
            np.array([r.xyxy for r in records], np.float32),
            np.array([r.confidence for r in records], np.float32),
            np.array([r.class_id for r in records], np.int64),
        )

    def to_records(self, names: dict[int, str] | None = None, kept: np.ndarray | None = None) -> list[DetectionRecord]:
        """One `DetectionRecord` per box, named by `names` (else the class id); `kept` marks defects (default all)."""
        names = names or {}
        flags = [True] * len(self) if kept is None else [bool(k) for k in kept]
        return [
            DetectionRecord(
                int(c), names.get(int(c), str(int(c))), float(s), (float(x1), float(y1), float(x2), float(y2)), k
            )
            for (x1, y1, x2, y2), s, c, k in zip(self.xyxy, self.confidence, self.class_id, flags, strict=True)
        ]

    @classmethod
    def from_list(cls, rows: list[dict[str, Any]]) -> Detections:
        """The inverse of `to_list` (`class_name` is not needed)."""
        return cls.from_records(DetectionRecord.from_json(r) for r in rows)

    def to_list(self, names: dict[int, str] | None = None) -> list[dict[str, Any]]:
        """JSON-ready list: `[{class_id, class_name, confidence, xyxy}]`, the one JSON shape of detections."""
        return [r.to_json() for r in self.to_records(names)]


@dataclass(frozen=True, slots=True)
class DetectionRecord:
    """One detection written out: class id and name, score, box (x1, y1, x2, y2 in image pixels), and whether it
    counted as a defect under the thresholds of the time (`kept`). The store's detections, the API's and the MQTT
    `defects` are these; `to_json` is the JSON shape of a detection (`Detections.to_list`)."""

    class_id: int
    class_name: str
    confidence: float
    xyxy: tuple[float, float, float, float]
    kept: bool = True

    def to_json(self) -> dict[str, Any]:
        """`{class_id, class_name, confidence, xyxy}`, rounded to what a detection means (1e-5, 0.01 px)."""
        return {
            "class_id": self.class_id,
            "class_name": self.class_name,
            "confidence": round(self.confidence, 5),
            "xyxy": [round(v, 2) for v in self.xyxy],
        }

    @classmethod
    def from_json(cls, row: dict[str, Any]) -> DetectionRecord:
        """The inverse of `to_json` (a missing `class_name` becomes the class id)."""
        cid = int(row["class_id"])
        x1, y1, x2, y2 = (float(v) for v in row["xyxy"])
        return cls(cid, str(row.get("class_name", cid)), float(row["confidence"]), (x1, y1, x2, y2))


class Decision(enum.StrEnum):
    PASS = "pass"
    REJECT = "reject"


# Reasons of a verdict decided without an inspection: the part missed its deadline (`uninspected`) or inspecting it
# failed (`error`). Its detections say nothing about the part.
# Reasons of a verdict decided without inspecting the part: missed its deadline, inspection failed, or (with a
# golden reference) the frame did not register to it. Any of them makes the verdict fail-safe.
FAILSAFE_REASONS = frozenset({"uninspected", "error", "unregistered"})


def is_failsafe(reasons: Iterable[str]) -> bool:
    """The fail-safe rule: a verdict whose reasons include a `FAILSAFE_REASONS` was decided without an inspection."""
    return any(r in FAILSAFE_REASONS for r in reasons)


class DecisionFacts:
    """`rejected` and `failsafe`, for every record of a verdict (`Verdict`, `VerdictRecord`, the store's
    `StoredVerdict`): what they say follows from `decision` and `reasons`, so it is written here once."""

    __slots__ = ()
    decision: Decision
    reasons: list[str]

    @property
    def rejected(self) -> bool:
        return self.decision == Decision.REJECT

    @property
    def failsafe(self) -> bool:
        """Decided without inspection (deadline missed or error): its detections say nothing about the part."""
        return is_failsafe(self.reasons)


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
class Verdict(DecisionFacts):
    """The one answer for one part.

    reasons: class names that rejected it, or `uninspected` (deadline missed) / `error` (inspection failed) /
    `unregistered` (the frame did not register to the recipe's golden reference): `FAILSAFE_REASONS`.
    detections: everything the model found (after NMS), not only the kept defects; `kept` marks the defects.
    names: the class names of the recipe that decided it (class id -> name), so that whoever writes the verdict
        out names its defects as that recipe's model does. truth: the source's ground truth, if it knows it.
    seq, run: the part's number and the start of the inspector that decided it (`inspector.part_ids`).
    `to_record()` is the verdict as the store, the PLC and the JSON lines write it.
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
    run: int = 0
    deadline_ns: int | None = None
    timings: Timings = field(default_factory=Timings)
    truth: Any = None
    image: np.ndarray | None = None
    names: dict[int, str] = field(default_factory=dict)

    def to_record(self, now_ns: int | None = None, now_wall: float | None = None) -> VerdictRecord:
        """The verdict written out (`inspector.verdict.VerdictRecord`); `now_ns` / `now_wall` pin the clocks
        (`time.monotonic_ns()`, `time.time()`) that turn its monotonic stamps into wall-clock times."""
        from inspector.verdict import VerdictRecord  # verdict.py builds on this module

        return VerdictRecord.of(self, now_ns, now_wall)


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
