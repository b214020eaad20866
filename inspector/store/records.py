"""What the store keeps, as Python records, and their conversions to and from table rows: stored verdicts (the
verdict record's fields, `inspector.verdict.VerdictFields`, plus row id and image) with their detections, a verdict
record queued for the writer (`Pending`), audit entries and thresholds versions.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from inspector.types import Decision, DetectionRecord, Detections
from inspector.verdict import VerdictFields, VerdictRecord

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
    "threshold_from_row",
    "verdict_from_row",
    "verdict_row",
]

MAX_INT64 = 2**63 - 1

# A stored detection is a detection record; `kept` marks the ones that counted as defects under the thresholds of
# the time. Its class is named when read, by the store's `names`.
StoredDetection = DetectionRecord


@dataclass(slots=True, kw_only=True)
class StoredVerdict(VerdictFields):
    """One stored verdict: the verdict record's fields (`ts` is the capture's wall-clock time), its row `id`, its
    `image` (relative to images_dir; None when not kept) and, where loaded, its detections."""

    id: int
    image: str | None = field(metadata={"description": "JPEG path relative to images_dir, when the image was kept"})
    detections: list[StoredDetection] | None = None

    def to_detections(self) -> Detections:
        """The stored detections as a `Detections` (empty when not loaded)."""
        return Detections.from_records(self.detections or [])


@dataclass(slots=True)
class AuditRecord:
    """One change: who, when (epoch seconds), what (`action`), the versions, a comment, the full JSON before and
    after."""

    id: int
    ts: float
    user: str
    action: str
    old_version: int | None
    new_version: int | None
    comment: str
    old: dict[str, Any] | None
    new: dict[str, Any] | None


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


@dataclass(slots=True)
class Pending:
    """A verdict on its way to the tables, as `handle()` queues it for the writer thread: its record, and the frame
    to archive, if any."""

    record: VerdictRecord
    frame: np.ndarray | None = None


def verdict_row(r: VerdictRecord, image: str | None, image_bytes: int) -> tuple[Any, ...]:
    """The `verdicts` row of a verdict record, in the order of the writer's INSERT (without `id`)."""
    return (
        clamp_int(r.part_id),
        clamp_int(r.seq),
        clamp_int(r.run),
        r.camera_id,
        r.ts,
        r.decision.value,
        json.dumps(r.reasons),
        clamp_int(r.thresholds_version),
        r.recipe,
        r.model_sha256,
        r.latency_ms,
        r.n_detections,
        r.n_kept,
        image,
        image_bytes,
    )


def detection_rows(verdict_id: int | None, r: VerdictRecord) -> list[tuple[Any, ...]]:
    """The `detections` rows of a verdict record, in table order."""
    return [(verdict_id, i, d.class_id, d.confidence, *d.xyxy, int(d.kept)) for i, d in enumerate(r.detections)]


_VERDICT_FIELDS = [f.name for f in fields(VerdictFields)]


def verdict_from_row(row: tuple[Any, ...]) -> StoredVerdict:
    """A `verdicts` row selected as `VERDICT_COLUMNS` (the row id, then the fields, then the image), without its
    detections (`reasons` is stored as JSON)."""
    n = len(_VERDICT_FIELDS)
    values = dict(zip(_VERDICT_FIELDS, row[1 : n + 1], strict=True))
    values.update(decision=Decision(values["decision"]), reasons=json.loads(values["reasons"]))
    return StoredVerdict(id=row[0], image=row[n + 1], **values)


def detection_from_row(row: tuple[Any, ...], names: dict[int, str]) -> StoredDetection:
    """A `detections` row selected as (class_id, confidence, x1, y1, x2, y2, kept), its class named by `names`."""
    cid, conf, x1, y1, x2, y2, kept = row
    return StoredDetection(cid, names.get(cid, str(cid)), conf, (x1, y1, x2, y2), bool(kept))


def audit_from_row(r: tuple[Any, ...]) -> AuditRecord:
    """An `audit` row selected as (id, ts, user, action, old_version, new_version, old, new, comment)."""
    return AuditRecord(*r[:6], comment=r[8], old=_loads(r[6]), new=_loads(r[7]))


def threshold_from_row(r: tuple[Any, ...]) -> ThresholdRecord:
    """A `thresholds` row selected as (id, version, ts, user, comment, json, recipe)."""
    return ThresholdRecord(r[0], r[1], r[2], r[3], r[4], json.loads(r[5]), r[6])


def clamp_int(value: int) -> int:
    """SQLite integers are 64-bit: keep out-of-range ids from raising (they match nothing anyway)."""
    return max(-MAX_INT64 - 1, min(MAX_INT64, int(value)))


def _loads(text: str | None) -> dict[str, Any] | None:
    return json.loads(text) if text else None
