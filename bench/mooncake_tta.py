"""Would flipped views of each frame (test-time augmentation) let the mooncake model catch more defective parts?

    .venv/bin/python bench/mooncake_tta.py DATA [--model models/mooncake-v8n-384-int8.onnx] [--views plain,h,hv]
        [--max-false-reject 0.025]

DATA: a calibration dataset with templates (`inspector sim mooncake dataset OUT -n 1000 --seed 11 --defect-rate 0.5
--val-fraction 1 --image-ext png` writes the recipe's, as in the model card's section 8). Each view set runs the
detector on the frame and its flips (`h`: mirrored left-right; `hv`: also upside down and both), maps the flipped
boxes back and pools every view's detections, as Ultralytics' `augment=True` pools its views before NMS (a class's
score is then its best view's).
For each view set the thresholds are fitted as `inspector calibrate --max-false-reject` fits them
(`fit_fewest_escapes`, floor 0.05) twice: on all the parts (in sample) and two-fold (fitted on one half of the
defective and of the good images, measured on the other, both ways, averaged). Prints one JSON line per view set:
escapes and false rejects, so a gain from the views shows against the same fit on one view.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script from a checkout

from inspector.calibrate import fit_fewest_escapes, inspection_rates  # noqa: E402
from inspector.detector.model import OnnxDetector  # noqa: E402
from inspector.eval_data import load_data  # noqa: E402
from inspector.evaluate import class_scores  # noqa: E402
from inspector.types import Detections, Thresholds  # noqa: E402

# numpy flip axes of each view: None is the frame itself, 1 mirrors left-right, 0 upside down
View = tuple[tuple[int, ...] | None, ...]
VIEWS: dict[str, View] = {
    "plain": (None,),
    "h": (None, (1,)),
    "hv": (None, (1,), (0,), (0, 1)),
}


def pooled_detections(detector: OnnxDetector, image: np.ndarray, views: View) -> Detections:
    """Every view's detections of `image`, boxes mapped back to the frame's pixels, in one `Detections`."""
    h, w = image.shape[:2]
    frames = [image if axes is None else np.ascontiguousarray(np.flip(image, axis=axes)) for axes in views]
    xyxy, conf, cls = [], [], []
    for axes, found in zip(views, detector.detect(frames), strict=True):
        boxes = found.xyxy.copy()
        if axes and 1 in axes:
            boxes[:, [0, 2]] = w - boxes[:, [2, 0]]
        if axes and 0 in axes:
            boxes[:, [1, 3]] = h - boxes[:, [3, 1]]
        xyxy.append(boxes)
        conf.append(found.confidence)
        cls.append(found.class_id)
    return Detections(np.concatenate(xyxy), np.concatenate(conf), np.concatenate(cls))


def _rates(defective: np.ndarray, good: np.ndarray, budget: float) -> dict[str, float]:
    fit = fit_fewest_escapes(defective, good, budget)
    esc, fr = inspection_rates(defective, good, fit.thresholds)
    d_half, g_half = np.array_split(defective, 2), np.array_split(good, 2)
    halves = []
    for fit_on, test_on in ((0, 1), (1, 0)):
        thresholds = fit_fewest_escapes(d_half[fit_on], g_half[fit_on], budget).thresholds
        halves.append(inspection_rates(d_half[test_on], g_half[test_on], thresholds))
    esc2, fr2 = np.mean(halves, axis=0)
    return {
        "escapes": round(esc, 4),
        "false_rejects": round(fr, 4),
        "two_fold_escapes": round(float(esc2), 4),
        "two_fold_false_rejects": round(float(fr2), 4),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, help="data.yaml with templates (the calibration parts of seed 11)")
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "mooncake-v8n-384-int8.onnx")
    parser.add_argument("--views", default="plain,h,hv", help=f"comma-separated view sets of {sorted(VIEWS)}")
    parser.add_argument("--max-false-reject", type=float, default=0.025, help="the recipe's fit (default 0.025)")
    args = parser.parse_args(argv)
    view_sets = args.views.split(",")
    unknown = [v for v in view_sets if v not in VIEWS]
    if unknown:
        parser.error(f"unknown view set(s) {unknown}; choose from {sorted(VIEWS)}")
    data = load_data(args.data)
    detector = OnnxDetector(args.model, conf=0.05, iou=0.7)  # the calibrator's detector floor and NMS
    names, base = dict(detector.names), Thresholds()
    frames = [(p, bool(len(lab))) for p, lab in zip(data.images, data.labels, strict=True)]
    frames += [(p, False) for p in data.templates]
    for name in view_sets:
        t0 = time.perf_counter()
        defective, good = [], []
        for path, is_defective in frames:
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is None:
                raise SystemExit(f"{path}: not an image")
            scores = class_scores(pooled_detections(detector, image, VIEWS[name]), base, names)
            (defective if is_defective else good).append(scores)
        report = {
            "views": name,
            "defective": len(defective),
            "good": len(good),
            "max_false_reject": args.max_false_reject,
            **_rates(np.array(defective), np.array(good), args.max_false_reject),
            "seconds": round(time.perf_counter() - t0, 1),
        }
        print(json.dumps(report), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
