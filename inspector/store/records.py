"""What the store keeps, as Python records, and their conversions to and from table rows: a verdict copied for the
writer (`Pending`), stored verdicts with their detections, audit entries and thresholds versions.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from inspector.types import FAILSAFE_REASONS, Decision, Detections, Verdict

__all__ = [
    "MAX_INT64",
    "AuditRecord",
    "Pending",
    "StoredDetection",
    "StoredVerdict",
    "ThresholdRecord",
    "audit_from_row",
    "clamp_int",
    "detection_from_row",
    "detection_rows",
    "pending_from",
    "threshold_from_row",
    "verdict_from_row",
    "verdict_row",
]

MAX_INT64 = 2**63 - 1


@dataclass(slots=True)
class StoredDetection:
    """One stored detection; `kept` marks the ones that counted as defects under the thresholds of the time."""

    class_id: int
    class_name: str
    confidence: float
    xyxy: tuple[float, float, float, float]
    kept: bool


@dataclass(slots=True)
class StoredVerdict:
    """One stored verdict. `ts` is wall-clock seconds (epoch) of the capture; `image` is relative to images_dir."""

    id: int
    part_id: int
    seq: int
    camera_id: str
    ts: float
    decision: str
    reasons: list[str]
    thresholds_version: int
    recipe: str
    model_sha256: str
    latency_ms: float | None
    n_detections: int
    n_kept: int
    image: str | None
    detections: list[StoredDetection] | None = None

    @property
    def failsafe(self) -> bool:
        """Decided without inspection (deadline missed, error, unregistered): its detections say nothing."""
        return any(reason in FAILSAFE_REASONS for reason in self.reasons)

    def to_detections(self) -> Detections:
        """The stored detections as a `Detections` (empty when not loaded)."""
        dets = self.detections or []
        if not dets:
            return Detections.empty()
        return Detections(
            np.array([d.xyxy for d in dets], np.float32),
            np.array([d.confidence for d in dets], np.float32),
            np.array([d.class_id for d in dets], np.int64),
        )


@dataclass(slots=True)
class AuditRecord:
    """One change: who, when (epoch seconds), what (`action`), the versions and full JSON before and after."""

    id: int
    ts: float
    user: str
    action: str
    old_version: int | None
    new_version: int | None
    old: dict[str, Any] | None
    new: dict[str, Any] | None
    comment: str


@dataclass(slots=True)
class ThresholdRecord:
    """A thresholds version as it was installed."""

    id: int
    version: int
    ts: float
    user: str
    comment: str
    thresholds: dict[str, Any]
    recipe: str = "default"


@dataclass(slots=True, kw_only=True)
class Pending(StoredVerdict):
    """A verdict on its way to the tables, as `handle()` copies it for the writer thread: the row to be (`id` 0 and
    `image` None until written), its detections as arrays, and the frame to archive, if any."""

    xyxy: np.ndarray
    confidence: np.ndarray
    class_id: np.ndarray
    kept: np.ndarray
    frame: np.ndarray | None = None


def pending_from(verdict: Verdict) -> Pending:
    """What the writer needs of a verdict (the frame is added by the writer's queue, if it has room)."""
    n = len(verdict.detections)
    kept = np.asarray(verdict.kept, bool)
    if kept.shape != (n,):
        kept = np.zeros(n, bool)
    latency = verdict.timings.latency_ms()
    return Pending(
        id=0,
        part_id=int(verdict.part_id),
        seq=int(verdict.seq),
        camera_id=str(verdict.camera_id),
        ts=_wall_clock(verdict.timings.captured_ns),
        decision=str(Decision(verdict.decision).value),
        reasons=[str(r) for r in verdict.reasons],
        thresholds_version=int(verdict.thresholds_version),
        recipe=str(verdict.recipe),
        model_sha256=str(verdict.model_sha256),
        latency_ms=latency if latency > 0 else None,
        n_detections=n,
        n_kept=int(kept.sum()),
        image=None,
        xyxy=verdict.detections.xyxy,
        confidence=verdict.detections.confidence,
        class_id=verdict.detections.class_id,
        kept=kept,
    )


def verdict_row(p: Pending, image: str | None, image_bytes: int) -> tuple[Any, ...]:
    """The `verdicts` row of a pending verdict, in the order of the writer's INSERT (without `id`)."""
    return (
        clamp_int(p.part_id),
        clamp_int(p.seq),
        p.camera_id,
        p.ts,
        p.decision,
        json.dumps(p.reasons),
        clamp_int(p.thresholds_version),
        p.recipe,
        p.model_sha256,
        p.latency_ms,
        p.n_detections,
        p.n_kept,
        image,
        image_bytes,
    )


def detection_rows(verdict_id: int | None, p: Pending) -> list[tuple[Any, ...]]:
    """The `detections` rows of a pending verdict, in table order."""
    return [
        (verdict_id, i, int(c), float(s), *(float(v) for v in box), int(k))
        for i, (box, s, c, k) in enumerate(zip(p.xyxy, p.confidence, p.class_id, p.kept, strict=True))
    ]


def verdict_from_row(row: tuple[Any, ...]) -> StoredVerdict:
    """A `verdicts` row selected as `VERDICT_COLUMNS`, without its detections (`reasons` is stored as JSON)."""
    return StoredVerdict(*row[:6], json.loads(row[6]), *row[7:14])  # the columns are the fields, in order


def detection_from_row(row: tuple[Any, ...], names: dict[int, str]) -> StoredDetection:
    """A `detections` row selected as (class_id, confidence, x1, y1, x2, y2, kept), its class named by `names`."""
    cid, conf, x1, y1, x2, y2, kept = row
    return StoredDetection(cid, names.get(cid, str(cid)), conf, (x1, y1, x2, y2), bool(kept))


def audit_from_row(r: tuple[Any, ...]) -> AuditRecord:
    """An `audit` row selected as (id, ts, user, action, old_version, new_version, old, new, comment)."""
    return AuditRecord(r[0], r[1], r[2], r[3], r[4], r[5], _loads(r[6]), _loads(r[7]), r[8])


def threshold_from_row(r: tuple[Any, ...]) -> ThresholdRecord:
    """A `thresholds` row selected as (id, version, ts, user, comment, json, recipe)."""
    return ThresholdRecord(r[0], r[1], r[2], r[3], r[4], json.loads(r[5]), r[6])


def clamp_int(value: int) -> int:
    """SQLite integers are 64-bit: keep out-of-range ids from raising (they match nothing anyway)."""
    return max(-MAX_INT64 - 1, min(MAX_INT64, int(value)))


def _loads(text: str | None) -> dict[str, Any] | None:
    return json.loads(text) if text else None


def _wall_clock(captured_ns: int) -> float:
    """Wall-clock time of a monotonic capture stamp; now when the stamp is missing or implausible."""
    now = time.time()
    if captured_ns <= 0:
        return now
    age = (time.monotonic_ns() - captured_ns) / 1e9
    return now - age if 0.0 <= age < 3600.0 else now
