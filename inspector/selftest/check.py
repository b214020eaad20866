"""Running the self-test: a model file through the line's own detector against its record or another file, the
result, and the load-time guard that refuses a failing file or swaps in the fallback."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2

from inspector.detector import ModelError, OnnxDetector
from inspector.selftest.compare import TOLERANCES, Mismatch, Tolerance, compare, looser
from inspector.selftest.host import host_line, host_summary
from inspector.selftest.record import SIDECAR_SUFFIX, SelfTestRecord, reference_images, sidecar_path

__all__ = ["SelfTestError", "SelfTestResult", "checked_detector", "failure_message", "run_selftest"]

log = logging.getLogger(__name__)


class SelfTestError(ModelError):
    """A model file that does not behave like its source on this host; `result` holds the comparison."""

    def __init__(self, message: str, result: SelfTestResult) -> None:
        super().__init__(message)
        self.result = result


@dataclass(slots=True)
class SelfTestResult:
    """The outcome of one self-test.

    status: "passed", "failed" or "not recorded" (no record beside the model and nothing to compare with);
    model / against: the files compared (`against`: the other file, or the record's source); images and boxes:
    how much was compared; mismatches: worst first.
    """

    status: str
    model: str
    against: str
    precision: str
    tolerance: Tolerance | None = None
    conf: float = 0.25
    images: int = 0
    boxes: int = 0
    mismatches: list[Mismatch] = field(default_factory=list)
    host: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    def summary(self) -> str:
        """One line for logs, health and the dashboard."""
        if self.status == "not recorded":
            return f"{self.model}: no self-test record ({Path(self.model).stem}{SIDECAR_SUFFIX}); not checked"
        head = (
            f"{self.model} ({self.precision}) vs {self.against}: {self.status}, {self.images} images, "
            f"{self.boxes} boxes at conf >= {self.conf:g}"
        )
        if not self.mismatches:
            return head
        kinds: dict[str, int] = {}
        for m in self.mismatches:
            kinds[m.kind] = kinds.get(m.kind, 0) + 1
        counts = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))
        return f"{head}; {len(self.mismatches)} mismatches ({counts}); worst: {self.mismatches[0]}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "model": self.model,
            "against": self.against,
            "precision": self.precision,
            "tolerance": None
            if self.tolerance is None
            else {"iou": self.tolerance.iou, "confidence": self.tolerance.confidence},
            "conf": self.conf,
            "images": self.images,
            "boxes": self.boxes,
            "mismatches": len(self.mismatches),
            "worst": str(self.mismatches[0]) if self.mismatches else None,
            "host": self.host,
            "summary": self.summary(),
        }


def run_selftest(
    detector: OnnxDetector,
    record_: SelfTestRecord | None = None,
    against: OnnxDetector | None = None,
    conf: float | None = None,
) -> SelfTestResult:
    """Compare `detector` with the recorded source boxes (`record_`, default: the sidecar beside the model) or,
    given `against`, with that other model's boxes on the same images (the record's images, else the synthetic
    reference images). conf: operating confidence (default: the record's, else 0.25)."""
    precision = detector.precision
    host = host_summary(detector.providers)
    if record_ is None:
        side = sidecar_path(detector.path)
        if side.is_file():
            record_ = SelfTestRecord.load(side)
        elif against is None:
            return SelfTestResult("not recorded", detector.path.name, "-", precision, host=host)
    conf = float(conf if conf is not None else (record_.conf if record_ else 0.25))
    if against is not None:
        tolerance = TOLERANCES[looser(precision, against.precision)]
        floor = max(0.001, conf - tolerance.confidence)
        if record_ is not None:
            pairs = [(im.name, im.image()) for im in record_.images]
        else:
            pairs = [(n, cv2.imdecode(cv2.imencode(".png", im)[1], cv2.IMREAD_COLOR)) for n, im in reference_images()]
        expected = [against.detect([im], conf=floor)[0] for _, im in pairs]
        against_name = against.path.name
    else:
        assert record_ is not None
        tolerance = TOLERANCES[looser(precision, record_.source.get("precision", "fp32"))]
        floor = max(0.001, conf - tolerance.confidence)
        if floor < record_.floor - 1e-9:
            raise ModelError(
                f"{detector.path}: its self-test record keeps boxes down to {record_.floor:g}, too high to check at "
                f"conf {conf:g}; re-record it with `inspector check-model {detector.path.name} --record`"
            )
        pairs = [(im.name, im.image()) for im in record_.images]
        expected = [im.detections for im in record_.images]
        against_name = f"{record_.source.get('file', '?')} as recorded"
        if record_.names and record_.names != detector.names:
            raise ModelError(f"{detector.path}: class names {detector.names} differ from its record's {record_.names}")
    mismatches: list[Mismatch] = []
    boxes = 0
    for (name, image), exp in zip(pairs, expected, strict=True):
        (act,) = detector.detect([image], conf=floor)
        boxes += int((exp.confidence >= conf).sum())
        mismatches += compare(exp, act, conf, tolerance, detector.names, name)
    mismatches.sort(key=lambda m: -m.severity)
    status = "failed" if mismatches else "passed"
    return SelfTestResult(
        status, detector.path.name, against_name, precision, tolerance, conf, len(pairs), boxes, mismatches, host
    )


def failure_message(result: SelfTestResult, detector: OnnxDetector) -> str:
    """The one line a failing file gets at start: the file, what went wrong, and the host that decides it."""
    return (
        f"model {detector.path} failed its self-test on this host: {result.summary()}; "
        f"{host_line(detector.providers)}. This file does not behave here as where it was made: use its fp32 "
        "file, re-export it with `inspector export --int8` (no saturating int8), or set model.fallback"
    )


def checked_detector(
    load: Callable[[], OnnxDetector], fallback: Callable[[], OnnxDetector] | None = None
) -> tuple[OnnxDetector, SelfTestResult, str | None]:
    """Load a model and self-test it; a failing one is replaced by `fallback` (also self-tested).

    Returns (detector, its result, alarm message or None). Raises `SelfTestError` when the model fails and there is
    no fallback, or the fallback fails too.
    """
    detector = load()
    result = run_selftest(detector)
    if result.passed or result.status == "not recorded":
        if not result.passed:
            log.warning("%s", result.summary())
        else:
            log.info("self-test: %s", result.summary())
        return detector, result, None
    message = failure_message(result, detector)
    if fallback is None:
        raise SelfTestError(message, result)
    log.error("%s; loading the fallback model", message)
    spare = fallback()
    spare_result = run_selftest(spare)
    if spare_result.status == "failed":
        raise SelfTestError(f"{message}; the fallback failed too: {failure_message(spare_result, spare)}", result)
    alarm = (
        f"model {detector.path.name} failed its self-test ({result.summary()}); running on fallback {spare.path.name}"
    )
    return spare, spare_result, alarm
