"""Model self-test: does this model file, on this host, find what its fp32 source found where it was made?

Why: the same ONNX file can answer differently on another CPU. onnxruntime's int8 kernels on AVX2 without VNNI
multiply uint8 activations by int8 weights with VPMADDUBSW, whose 16-bit sums saturate; on a VNNI machine the
same file is fine. A file that misbehaves on this host must not inspect parts, and nothing else would say so.

The record (`<model stem>.selftest.json`, beside the model): a handful of small reference images (PNG, embedded,
so the record travels with the model) and the fp32 source's detections on them, written by `inspector export`
(`record` + `SelfTestRecord.save`). The check (`run_selftest`) runs the model file through the very detector the
line uses (same session, providers and threads) and compares box by box with `compare`:

- boxes are paired greedily, highest recorded confidence first, same class, IoU >= 0.1, best IoU wins;
- *missing*: a recorded box at or above the operating confidence `conf` with no partner;
- *extra*: a new box at or above `conf` with no partner;
- *confidence*: a pair whose confidences differ by more than the tolerance;
- *box*: a pair whose IoU is under the tolerance's `iou`.

An unpaired box that overlaps (IoU >= 0.5) a paired box on its own side is not counted: it is the same finding
seen twice on that side (NMS kept two near-equal boxes whose IoU sat at 0.7 give or take a hair, or a second class
scoring near the first crossed the floor). A class that changes outright is still a missing plus an extra box.

Both sides keep boxes down to `conf - tolerance.confidence`, so a box that merely crossed `conf` by a hair is a
confidence comparison, not a missing or extra box. The tolerance follows the less precise of the two files
(`TOLERANCES`): int8 rounding moves confidences by a few hundredths, saturation by far more and adds boxes.

`inspector check-model MODEL [--against OTHER.onnx]` runs it from the shell; `run`, `demo`, `bench` and `eval`
run it at load (`checked_detector`).
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import json
import logging
import platform
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import onnxruntime as ort

from inspector.detector import ModelError, OnnxDetector
from inspector.types import Detections

__all__ = [
    "SCHEMA",
    "TOLERANCES",
    "Mismatch",
    "RecordedImage",
    "SelfTestError",
    "SelfTestRecord",
    "SelfTestResult",
    "Tolerance",
    "compare",
    "cpu_features",
    "host_summary",
    "main",
    "record",
    "reference_images",
    "run_selftest",
    "sidecar_path",
]

log = logging.getLogger(__name__)

SCHEMA = 1
SIDECAR_SUFFIX = ".selftest.json"
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
_ORDER = ["fp32", "fp16", "int8"]


class SelfTestError(ModelError):
    """A model file that does not behave like its source on this host; `result` holds the comparison."""

    def __init__(self, message: str, result: SelfTestResult) -> None:
        super().__init__(message)
        self.result = result


# ------------------------------------------------------------------------------------------------------ host
def cpu_features() -> list[str]:
    """The CPU's instruction sets that decide which int8 kernels onnxruntime runs (x86: AVX2, AVX-512, VNNI;
    ARM: NEON dot product, i8mm), as named in /proc/cpuinfo; empty where that file is not readable."""
    wanted = {"avx2", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "amx_int8", "asimd", "asimddp", "i8mm"}
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    found: set[str] = set()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            found |= wanted & set(line.split(":", 1)[-1].split())
    return sorted(found)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def host_summary(providers: Sequence[str] = ()) -> dict[str, Any]:
    """What decides how a model runs here: CPU, its instruction sets, onnxruntime, execution providers."""
    return {
        "cpu": _cpu_model(),
        "machine": platform.machine(),
        "cpu_features": cpu_features(),
        "onnxruntime": ort.__version__,
        "providers": list(providers),
    }


def _host_line(providers: Sequence[str]) -> str:
    h = host_summary(providers)
    return (
        f"CPU {h['cpu']} ({h['machine']}; {', '.join(h['cpu_features']) or 'no AVX2/AVX-512/VNNI/NEON dot'}), "
        f"onnxruntime {h['onnxruntime']}, provider {', '.join(h['providers']) or '?'}"
    )


def sidecar_path(model: Path) -> Path:
    """`models/x-int8.onnx` -> `models/x-int8.selftest.json`."""
    model = Path(model)
    return model.with_name(model.stem + SIDECAR_SUFFIX)


# ------------------------------------------------------------------------------------------------------ record
@dataclass(slots=True)
class RecordedImage:
    """One reference image (PNG bytes, decoded on demand) and the source's detections on it."""

    name: str
    png: bytes
    detections: Detections

    def image(self) -> np.ndarray:
        """(H, W, 3) uint8 BGR."""
        image = cv2.imdecode(np.frombuffer(self.png, np.uint8), cv2.IMREAD_COLOR)
        if image is None:
            raise ValueError(f"self-test image {self.name}: not a decodable PNG")
        return image


def _dets_to_json(d: Detections) -> list[dict[str, Any]]:
    return [{"class_id": c, "confidence": round(s, 6), "xyxy": [round(float(v), 3) for v in box]} for box, s, c in d]


def _dets_from_json(rows: list[dict[str, Any]]) -> Detections:
    if not rows:
        return Detections.empty()
    return Detections(
        np.array([r["xyxy"] for r in rows], np.float32),
        np.array([r["confidence"] for r in rows], np.float32),
        np.array([r["class_id"] for r in rows], np.int64),
    )


@dataclass(slots=True)
class SelfTestRecord:
    """The source model's detections on the reference images, and where they were recorded.

    source: {"file", "sha256", "precision"} of the model that made the detections (the fp32 file).
    conf: the operating confidence the record is meant for; floor: the confidence down to which boxes were kept.
    host: `host_summary` of the recording machine; created: ISO time.
    """

    source: dict[str, str]
    conf: float
    floor: float
    images: list[RecordedImage]
    names: dict[int, str]
    host: dict[str, Any] = field(default_factory=dict)
    created: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "source": self.source,
            "conf": self.conf,
            "floor": self.floor,
            "names": {str(k): v for k, v in self.names.items()},
            "host": self.host,
            "created": self.created,
            "images": [
                {
                    "name": im.name,
                    "png_base64": base64.b64encode(im.png).decode("ascii"),
                    "detections": _dets_to_json(im.detections),
                }
                for im in self.images
            ],
        }

    def save(self, path: Path) -> Path:
        Path(path).write_text(json.dumps(self.to_json(), indent=1) + "\n")
        return Path(path)

    @classmethod
    def load(cls, path: Path) -> SelfTestRecord:
        """Read a record; raises `ModelError` naming the file and what is wrong with it."""
        try:
            raw = json.loads(Path(path).read_text())
            if raw.get("schema") != SCHEMA:
                raise ValueError(f"schema {raw.get('schema')!r}, this inspector reads {SCHEMA}")
            images = [
                RecordedImage(im["name"], base64.b64decode(im["png_base64"]), _dets_from_json(im["detections"]))
                for im in raw["images"]
            ]
            return cls(
                source=dict(raw["source"]),
                conf=float(raw["conf"]),
                floor=float(raw["floor"]),
                images=images,
                names={int(k): str(v) for k, v in raw["names"].items()},
                host=dict(raw.get("host", {})),
                created=str(raw.get("created", "")),
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ModelError(f"{path}: not a usable self-test record ({type(exc).__name__}: {exc})") from exc


def reference_images(count: int = 8, seed: int = 20261201) -> list[tuple[str, np.ndarray]]:
    """`count` small reference images from the synthetic PCB line: every other part defective, so the record
    holds boxes of several classes and clean board around them. Deterministic by seed."""
    from inspector.sim import SyntheticLine  # drawing code: only needed when recording

    out = []
    for k in range(count):
        line = SyntheticLine(seed=seed, defect_rate=1.0 if k % 2 == 0 else 0.0, size=640)
        out.append((f"synthetic-{seed}-{k}.png", line.make_part(k).image))
    return out


def record(
    detector: OnnxDetector,
    images: Sequence[tuple[str, np.ndarray]],
    conf: float = 0.25,
    margin: float | None = None,
) -> SelfTestRecord:
    """Run `detector` (the fp32 source) on `images` ((name, BGR uint8) pairs) and record its boxes down to
    `conf - margin` (margin: the loosest tolerance, int8's, so that any variant can be checked against it)."""
    margin = max(t.confidence for t in TOLERANCES.values()) if margin is None else margin
    floor = max(0.001, conf - margin)
    recorded = []
    for name, image in images:
        ok, png = cv2.imencode(".png", image)
        if not ok:
            raise ValueError(f"{name}: cannot encode as PNG")
        decoded = cv2.imdecode(png, cv2.IMREAD_COLOR)  # record what the check will see, byte for byte
        (dets,) = detector.detect([decoded], conf=floor)
        recorded.append(RecordedImage(name, png.tobytes(), dets))
    return SelfTestRecord(
        source={"file": detector.path.name, "sha256": detector.sha256, "precision": detector.precision},
        conf=conf,
        floor=floor,
        images=recorded,
        names=dict(detector.names),
        host=host_summary(detector.providers),
        created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    )


# ------------------------------------------------------------------------------------------------------ compare
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


def _looser(a: str, b: str) -> str:
    return max(a, b, key=lambda p: _ORDER.index(p) if p in _ORDER else len(_ORDER))


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
        tolerance = TOLERANCES[_looser(precision, against.precision)]
        floor = max(0.001, conf - tolerance.confidence)
        if record_ is not None:
            pairs = [(im.name, im.image()) for im in record_.images]
        else:
            pairs = [(n, cv2.imdecode(cv2.imencode(".png", im)[1], cv2.IMREAD_COLOR)) for n, im in reference_images()]
        expected = [against.detect([im], conf=floor)[0] for _, im in pairs]
        against_name = against.path.name
    else:
        assert record_ is not None
        tolerance = TOLERANCES[_looser(precision, record_.source.get("precision", "fp32"))]
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
        f"{_host_line(detector.providers)}. This file does not behave here as where it was made: use its fp32 "
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


# ------------------------------------------------------------------------------------------------------ CLI
def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="inspector check-model",
        description="Run a model file on this host and compare it box by box with its recorded source outputs "
        "(its .selftest.json) or with another model file; exits 1 when it does not behave like its source.",
    )
    parser.add_argument("model", type=Path, help="the ONNX model to check")
    parser.add_argument("--against", type=Path, help="compare with this model file's outputs on the same images")
    parser.add_argument("--conf", type=float, help="operating confidence (default: the record's, else 0.25)")
    parser.add_argument("--providers", default="cpu", help="comma-separated execution providers (cpu)")
    parser.add_argument(
        "--record", action="store_true", help="write MODEL's own .selftest.json (MODEL must be the fp32 source)"
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args(argv)
    providers = [p for p in args.providers.split(",") if p]
    try:
        detector = OnnxDetector(args.model, providers=providers)
        if args.record:
            rec = record(detector, reference_images(), conf=args.conf or 0.25)
            path = rec.save(sidecar_path(args.model))
            print(f"recorded {len(rec.images)} images from {args.model.name} into {path}")
            return 0
        other = OnnxDetector(args.against, providers=providers) if args.against else None
        result = run_selftest(detector, against=other, conf=args.conf)
    except (ModelError, OSError, ValueError) as exc:
        print(f"inspector check-model: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result.to_dict()))
    else:
        print(result.summary())
        print(_host_line(detector.providers))
    if result.status == "not recorded":
        return 2
    return 0 if result.passed else 1
