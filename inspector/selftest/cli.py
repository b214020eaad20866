"""`inspector check-model MODEL [--against OTHER.onnx] [--record]`: the self-test from the shell."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from inspector.detector import ModelError, OnnxDetector
from inspector.selftest.check import run_selftest
from inspector.selftest.host import host_line
from inspector.selftest.record import record, reference_images, sidecar_path

__all__ = ["main"]


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
        print(host_line(detector.providers))
    if result.status == "not recorded":
        return 2
    return 0 if result.passed else 1
