"""Which mooncake defects does the model miss, and are they the faint ones?

    .venv/bin/python bench/mooncake_misses.py [--parts 300] [--seed 11] [--model models/mooncake-v8n-384-int8.onnx]
        [--thresholds calibration/mooncake-v8n-384-int8-synthetic.yaml]

Renders `--parts` defective parts of a line seed (default 11, the calibration seed; never trained on; defect rate
1, as they come, 1-2 defects each), decides each as the `mooncake` recipe does (detector floor 0.05, the thresholds
file's per-class floors) and, for every defect, measures how visible it is against the part's own defect-free
template: its changed pixels (any channel more than `DIFF_THRESHOLD` grey levels from the template inside its tight
box) and their contrast (the 90th percentile of that difference). A defect is found when a detection above its
class's threshold, of any class, overlaps its box. Prints one JSON line: parts escaped, and per class and per
visibility band the defects and the share missed, with the median visibility of found and missed ones. If the
missed defects were the faint ones, the line's spec (not the model) would bound the escapes; if they are as
visible as the found ones, the model has to learn them.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script from a checkout

from inspector.decide import decide  # noqa: E402
from inspector.detector.model import OnnxDetector  # noqa: E402
from inspector.eval_data import load_thresholds  # noqa: E402
from inspector.sim.mooncake import DIFF_THRESHOLD, MOONCAKE_NAMES, MooncakeLine  # noqa: E402

PIXEL_BANDS = ((0, 50), (50, 150), (150, 400), (400, None))  # changed pixels of a defect, at 384 px
CONTRAST_BANDS = ((0, 25), (25, 40), (40, 60), (60, None))  # grey levels


def _visibility(image: np.ndarray, template: np.ndarray, box: np.ndarray) -> tuple[int, float]:
    """(changed pixels, their 90th-percentile difference) inside `box` (xyxy px)."""
    x0, y0, x1, y1 = (round(float(v)) for v in box)
    diff = np.abs(image[y0:y1, x0:x1].astype(np.int16) - template[y0:y1, x0:x1].astype(np.int16)).max(axis=2)
    changed = diff[diff > DIFF_THRESHOLD]
    return int(changed.size), float(np.percentile(changed, 90)) if changed.size else 0.0


def _overlaps(a: np.ndarray, b: np.ndarray) -> bool:
    return not (a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1])


def _summary(rows: list[dict[str, object]]) -> dict[str, object]:
    found = [r for r in rows if r["found"]]
    missed = [r for r in rows if not r["found"]]

    def median(group: list[dict[str, object]], key: str) -> float | None:
        return round(statistics.median(float(r[key]) for r in group), 1) if group else None  # type: ignore[arg-type]

    return {
        "defects": len(rows),
        "missed": round(len(missed) / len(rows), 3) if rows else None,
        "changed_px_found_missed": [median(found, "changed_px"), median(missed, "changed_px")],
        "contrast_found_missed": [median(found, "contrast"), median(missed, "contrast")],
    }


def _band(rows: list[dict[str, object]], key: str, bands: tuple[tuple[int, int | None], ...]) -> dict[str, object]:
    out: dict[str, object] = {}
    for low, high in bands:
        inside = [r for r in rows if float(r[key]) >= low and (high is None or float(r[key]) < high)]  # type: ignore[arg-type]
        missed = round(sum(not r["found"] for r in inside) / len(inside), 3) if inside else None
        out[f"{low}-{high}" if high is not None else f"{low}+"] = {"defects": len(inside), "missed": missed}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", type=int, default=300)
    parser.add_argument("--seed", type=int, default=11, help="line seed (the calibration parts': 11)")
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "mooncake-v8n-384-int8.onnx")
    parser.add_argument(
        "--thresholds", type=Path, default=ROOT / "calibration" / "mooncake-v8n-384-int8-synthetic.yaml"
    )
    args = parser.parse_args(argv)
    thresholds = load_thresholds(args.thresholds)
    floors = {name: thresholds.for_class(name).min_confidence for name in MOONCAKE_NAMES.values()}
    detector = OnnxDetector(str(args.model))
    line = MooncakeLine(seed=args.seed, defect_rate=1.0)
    rows: list[dict[str, object]] = []
    escaped = 0
    for index in range(args.parts):
        part = line.make_part(index)
        (dets,) = detector.detect([part.image], conf=0.05)
        escaped += not decide(dets, thresholds, MOONCAKE_NAMES).rejected
        kept = [
            box
            for box, class_id, score in zip(dets.xyxy, dets.class_id, dets.confidence, strict=True)
            if score >= floors[MOONCAKE_NAMES[int(class_id)]]
        ]
        for box, class_id in zip(part.boxes, part.class_ids, strict=True):
            changed, contrast = _visibility(part.image, part.template, box)
            rows.append(
                {
                    "class": MOONCAKE_NAMES[int(class_id)],
                    "changed_px": changed,
                    "contrast": contrast,
                    "found": any(_overlaps(box, k) for k in kept),
                }
            )
    report = {
        "model": args.model.name,
        "thresholds": args.thresholds.name,
        "seed": args.seed,
        "parts": args.parts,
        "escaped": escaped,
        "all": _summary(rows),
        "by_class": {name: _summary([r for r in rows if r["class"] == name]) for name in MOONCAKE_NAMES.values()},
        "by_changed_px": _band(rows, "changed_px", PIXEL_BANDS),
        "by_contrast": _band(rows, "contrast", CONTRAST_BANDS),
    }
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
