"""One verdict record: a `Verdict` as everything downstream writes it out, made once by `Verdict.to_record()`.

`VerdictFields` is the one list of a written-out verdict's fields, in the store's column order. `VerdictRecord`
extends it with what the moment of writing adds (the decision's wall-clock time, the named detections, the ground
truth flag); the store's `StoredVerdict` extends it with what the store adds (row id, image, detections read back),
and the API's verdict answers are generated from the store's records. The store row, the MQTT `verdict` and
`reject` payloads (`inspector.plc.contract`) and the JSON-lines sink (`inspector.line.JsonlSink`) are made from a
`VerdictRecord`; the `defects` list of the last two is `VerdictRecord.defects()`.

Clocks: verdicts carry `time.monotonic_ns()` stamps; a record turns them into Unix times once, with one reading of
both clocks (`now_ns`, `now_wall`), so the times in one record agree with each other.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from inspector.types import Decision, DecisionFacts, DetectionRecord, Verdict

__all__ = ["VerdictFields", "VerdictRecord", "capture_wall_clock", "truth_flag_of", "wall_from_monotonic_ns"]


@dataclass(slots=True)
class VerdictFields(DecisionFacts):
    """The fields of a verdict as it is written out (store columns, API answers), in the store's column order."""

    part_id: int
    seq: int
    run: int = field(metadata={"description": "the start of the inspector that decided it (grows with every start)"})
    camera_id: str
    ts: float = field(metadata={"description": "capture time, seconds since the epoch"})
    decision: Decision
    reasons: list[str]
    thresholds_version: int
    recipe: str
    model_sha256: str
    latency_ms: float | None  # capture to decision; None when not known
    n_detections: int
    n_kept: int


@dataclass(slots=True, kw_only=True)
class VerdictRecord(VerdictFields):
    """A verdict written out: `VerdictFields` plus the wall-clock time of the decision (`decided_ts`, the MQTT
    message's `ts`), every detection named by the verdict's recipe with `kept` marking the defects, and the source's
    ground truth as a flag (`truth`: defective or not, None when not known)."""

    decided_ts: float
    detections: list[DetectionRecord] = field(default_factory=list)
    truth: bool | None = None

    @classmethod
    def of(cls, verdict: Verdict, now_ns: int | None = None, now_wall: float | None = None) -> VerdictRecord:
        """`verdict` written out, its monotonic stamps read against `now_ns` / `now_wall` (default: now)."""
        now_ns = time.monotonic_ns() if now_ns is None else now_ns
        now_wall = time.time() if now_wall is None else now_wall
        n = len(verdict.detections)
        kept = np.asarray(verdict.kept, bool)
        if kept.shape != (n,):  # a verdict without a kept mask (a fail-safe one): no defects
            kept = np.zeros(n, bool)
        latency = verdict.timings.latency_ms()
        return cls(
            part_id=int(verdict.part_id),
            seq=int(verdict.seq),
            run=int(verdict.run),
            camera_id=str(verdict.camera_id),
            ts=capture_wall_clock(verdict.timings.captured_ns, now_ns, now_wall),
            decision=Decision(verdict.decision),
            reasons=[str(r) for r in verdict.reasons],
            thresholds_version=int(verdict.thresholds_version),
            recipe=str(verdict.recipe),
            model_sha256=str(verdict.model_sha256),
            latency_ms=latency if latency > 0 else None,
            n_detections=n,
            n_kept=int(kept.sum()),
            decided_ts=wall_from_monotonic_ns(verdict.timings.decided_ns or now_ns, now_ns, now_wall),
            detections=verdict.detections.to_records(verdict.names, kept),
            truth=truth_flag_of(verdict.truth),
        )

    def defects(self) -> list[dict[str, Any]]:
        """The kept defects as the MQTT `verdict` message and the JSON lines list them: `[{class, confidence,
        xyxy}]`, rounded to 1e-4 and 0.1 px."""
        return [
            {"class": d.class_name, "confidence": round(d.confidence, 4), "xyxy": [round(v, 1) for v in d.xyxy]}
            for d in self.detections
            if d.kept
        ]


def truth_flag_of(truth: Any) -> bool | None:
    """The ground truth a verdict carries as "is the part defective?": a bool, or the `defective` flag of a truth
    record (`inspector.truth.GroundTruth`, the synthetic line's `PartTruth`, a labelled folder's `ImageTruth`);
    None for anything else. Reading other shapes is `inspector.truth`'s job (the demo's and the simulator's)."""
    flag = getattr(truth, "defective", truth)
    return bool(flag) if isinstance(flag, bool | np.bool_) else None


def wall_from_monotonic_ns(mono_ns: int, now_mono_ns: int | None = None, now_wall: float | None = None) -> float:
    """Unix time (s) of a `time.monotonic_ns()` instant, rounded to the millisecond."""
    now_mono_ns = time.monotonic_ns() if now_mono_ns is None else now_mono_ns
    now_wall = time.time() if now_wall is None else now_wall
    return round(now_wall + (mono_ns - now_mono_ns) / 1e9, 3)


def capture_wall_clock(captured_ns: int, now_ns: int, now_wall: float) -> float:
    """Unix time (s) of a monotonic capture stamp, as the store keeps it: `now_wall` when the stamp is missing or
    implausible (in the future, or over an hour old)."""
    if captured_ns <= 0:
        return now_wall
    age = (now_ns - captured_ns) / 1e9
    return now_wall - age if 0.0 <= age < 3600.0 else now_wall
