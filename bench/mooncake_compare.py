"""Which of two mooncake files (a model and its thresholds) lets fewer defective parts pass, on the same parts?

    .venv/bin/python bench/mooncake_compare.py --b MODEL THRESHOLDS [--a MODEL THRESHOLDS] [--parts 3000]
        [--seed 13] [--defect-rate 0.3]

A ship rule measured on a few hundred defective parts cannot tell two successive training chunks apart (the
mooncake checkpoint README, chunk 12: three such samples pointed both ways). This renders the first `--parts` parts
of a line seed no fit has used, once each, judges every part with both files (the frame as rendered, detector
floor 0.05 as in `recipes/mooncake`) and prints one JSON line: each file's escapes among the defective parts and
false rejects among the good ones, the parts only one of the two got wrong, and an exact two-sided sign test
(McNemar's) on those: a small `p` says the difference is the files', not the sample's. `--a` defaults to the
shipped int8 file and its thresholds.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass
from math import comb
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script from a checkout

from inspector.decide import decide  # noqa: E402
from inspector.detector.model import OnnxDetector  # noqa: E402
from inspector.eval_data import load_thresholds  # noqa: E402
from inspector.sim.mooncake import MOONCAKE_NAMES, MooncakeLine  # noqa: E402
from inspector.types import Thresholds  # noqa: E402

DETECTOR_FLOOR = 0.05  # recipes/mooncake's model.conf
SHIPPED = [ROOT / "models/mooncake-v8n-384-int8.onnx", ROOT / "calibration/mooncake-v8n-384-int8-synthetic.yaml"]


@dataclass(frozen=True)
class Judge:
    """One file pair as the `mooncake` recipe uses it: does it reject this frame?"""

    detector: OnnxDetector
    thresholds: Thresholds

    @classmethod
    def load(cls, model: Path, thresholds: Path) -> Judge:
        rules = load_thresholds(thresholds)
        return cls(OnnxDetector(str(model)), rules)

    def rejects(self, image: np.ndarray) -> bool:
        (detections,) = self.detector.detect([image], conf=DETECTOR_FLOOR)
        return decide(detections, self.thresholds, MOONCAKE_NAMES).rejected


@dataclass
class Comparison:
    """Counts over the same parts; `*_a_only`: parts file A got wrong and file B got right."""

    defective: int = 0
    good: int = 0
    escapes_a: int = 0
    escapes_b: int = 0
    escapes_a_only: int = 0
    escapes_b_only: int = 0
    false_rejects_a: int = 0
    false_rejects_b: int = 0
    false_rejects_a_only: int = 0
    false_rejects_b_only: int = 0

    def add(self, defective: bool, rejected_a: bool, rejected_b: bool) -> None:
        if defective:
            self.defective += 1
            self.escapes_a += not rejected_a
            self.escapes_b += not rejected_b
            self.escapes_a_only += rejected_b and not rejected_a
            self.escapes_b_only += rejected_a and not rejected_b
        else:
            self.good += 1
            self.false_rejects_a += rejected_a
            self.false_rejects_b += rejected_b
            self.false_rejects_a_only += rejected_a and not rejected_b
            self.false_rejects_b_only += rejected_b and not rejected_a

    def report(self) -> dict[str, int | float]:
        return {
            **asdict(self),
            "p_escapes": sign_test(self.escapes_a_only, self.escapes_b_only),
            "p_false_rejects": sign_test(self.false_rejects_a_only, self.false_rejects_b_only),
        }


def sign_test(a_only: int, b_only: int) -> float:
    """Exact two-sided p of `a_only` against `b_only` discordant parts if either file were as likely to be wrong."""
    n = a_only + b_only
    if n == 0:
        return 1.0
    tail = sum(comb(n, i) for i in range(min(a_only, b_only) + 1)) / 2**n
    return round(min(1.0, 2 * tail), 5)


def compare(a: Judge, b: Judge, line: MooncakeLine, parts: int) -> Comparison:
    result = Comparison()
    for index in range(parts):
        part = line.make_part(index)
        result.add(bool(len(part.class_ids)), a.rejects(part.image), b.rejects(part.image))
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--a", nargs=2, type=Path, metavar=("MODEL", "THRESHOLDS"), default=SHIPPED)
    parser.add_argument("--b", nargs=2, type=Path, metavar=("MODEL", "THRESHOLDS"), required=True)
    parser.add_argument("--parts", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=13, help="line seed: one no fit or training used (13)")
    parser.add_argument("--defect-rate", type=float, default=0.3, help="the demo's: 0.3")
    args = parser.parse_args(argv)
    for path in (*args.a, *args.b):
        if not path.is_file():
            parser.error(f"{path}: no such file")
    a, b = Judge.load(*args.a), Judge.load(*args.b)
    result = compare(a, b, MooncakeLine(seed=args.seed, defect_rate=args.defect_rate), args.parts)
    files = {"a": [str(p) for p in args.a], "b": [str(p) for p in args.b]}
    print(json.dumps({**files, "seed": args.seed, "parts": args.parts, **result.report()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
