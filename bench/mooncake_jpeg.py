"""Does the mooncake model judge a part differently as rendered and as the JPEG file its training data was?

    .venv/bin/python bench/mooncake_jpeg.py [--parts 300] [--seed 0] [--quality 95]
        [--model models/mooncake-v8n-384-int8.onnx] [--thresholds calibration/mooncake-v8n-384-int8-synthetic.yaml]

The synthetic mooncake datasets (`inspector sim mooncake dataset`, training, held-out and calibration parts) are
JPEG files (quality 95); the demo's line hands the renders to the pipeline as they are. This decides each of the
first `--parts` parts of the demo's line (seed 0, defect rate 0.3) both ways with the same model and thresholds
(detector floor 0.05, as in `recipes/mooncake`) and prints one JSON line: false rejects among the good parts and
escapes among the defective ones, raw and JPEG.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script from a checkout

from inspector.decide import decide  # noqa: E402
from inspector.detector.model import OnnxDetector  # noqa: E402
from inspector.eval_data import load_thresholds  # noqa: E402
from inspector.sim.mooncake import MOONCAKE_NAMES, MooncakeLine  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0, help="line seed (the demo's: 0)")
    parser.add_argument("--quality", type=int, default=95, help="JPEG quality (the dataset writer's: 95)")
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "mooncake-v8n-384-int8.onnx")
    parser.add_argument(
        "--thresholds", type=Path, default=ROOT / "calibration" / "mooncake-v8n-384-int8-synthetic.yaml"
    )
    args = parser.parse_args(argv)
    thresholds = load_thresholds(args.thresholds)
    detector = OnnxDetector(str(args.model))
    line = MooncakeLine(seed=args.seed, defect_rate=0.3)
    counts = {"good": 0, "defective": 0, "fr_raw": 0, "fr_jpeg": 0, "esc_raw": 0, "esc_jpeg": 0}
    for index in range(args.parts):
        part = line.make_part(index)
        ok, encoded = cv2.imencode(".jpg", part.image, [cv2.IMWRITE_JPEG_QUALITY, args.quality])
        assert ok
        jpeg = cv2.imdecode(encoded, cv2.IMREAD_COLOR)
        raw_dets, jpeg_dets = detector.detect([part.image, jpeg], conf=0.05)
        rejected = [decide(d, thresholds, MOONCAKE_NAMES).rejected for d in (raw_dets, jpeg_dets)]
        if len(part.class_ids):
            counts["defective"] += 1
            counts["esc_raw"] += not rejected[0]
            counts["esc_jpeg"] += not rejected[1]
        else:
            counts["good"] += 1
            counts["fr_raw"] += rejected[0]
            counts["fr_jpeg"] += rejected[1]
    print(json.dumps({"model": args.model.name, "parts": args.parts, "seed": args.seed, **counts}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
