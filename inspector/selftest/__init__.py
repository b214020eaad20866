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

from inspector.selftest.check import SelfTestError, SelfTestResult, checked_detector, failure_message, run_selftest
from inspector.selftest.cli import main
from inspector.selftest.compare import TOLERANCES, Mismatch, Tolerance, compare
from inspector.selftest.host import cpu_features, host_summary
from inspector.selftest.record import SCHEMA, RecordedImage, SelfTestRecord, record, reference_images, sidecar_path

__all__ = [
    "SCHEMA",
    "TOLERANCES",
    "Mismatch",
    "RecordedImage",
    "SelfTestError",
    "SelfTestRecord",
    "SelfTestResult",
    "Tolerance",
    "checked_detector",
    "compare",
    "cpu_features",
    "failure_message",
    "host_summary",
    "main",
    "record",
    "reference_images",
    "run_selftest",
    "sidecar_path",
]
