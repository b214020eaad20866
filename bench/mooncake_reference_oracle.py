"""Could a per-mould golden reference find the cracks the mooncake model misses? An upper bound, with the true pose.

    .venv/bin/python bench/mooncake_reference_oracle.py [--parts 600] [--seed 11] [--residual bandpass|dark-lines]

A feasibility check for the lever the model card names (section 9), before any registration is written: each part
of a line seed (defect rate 0.5) is turned and scaled to a canonical pose with the renderer's own centre, radius and
rotation (an oracle: a real line would have to find them), and compared with its mould's reference, the first
defect-free part of that mould, posed the same way. Both are reduced to a band-pass of their grey image (minus a
6 px Gaussian, divided by the local mean amplitude: tone, light level and gradient drop out). The residual:

- `bandpass`: |part - reference|, blurred by 1.5 px;
- `dark-lines`: where the part is darker than the reference, averaged along 15 px lines at 12 angles, the largest
  kept (a crack is a long dark line; the pastry's texture is not).

A part's score is the 99.9th percentile of its residual inside 85 % of the nominal radius. Prints one JSON line:
the good and cracked parts scored, the AUC (how often a cracked part outscores a good one), and the share of cracked
parts scored above the good parts' 97.5th percentile (what a 2.5 % false-reject budget would catch).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script from a checkout

from inspector.sim.mooncake import MooncakeLine  # noqa: E402
from inspector.sim.mooncake.defects import CRACK  # noqa: E402
from inspector.sim.mooncake.scene import BASE_SIZE, Scene, make_scene  # noqa: E402

SIZE = BASE_SIZE
CANON_RADIUS = 0.32 * SIZE  # px: every cake is scaled to this radius (the renderer draws 0.29-0.35 of the size)
LINE_PX = 15
LINE_KERNELS = [
    cv2.warpAffine(
        np.pad(np.full((1, LINE_PX), 1 / LINE_PX, np.float32), ((LINE_PX // 2, LINE_PX // 2), (0, 0))),
        cv2.getRotationMatrix2D((LINE_PX / 2 - 0.5, LINE_PX / 2 - 0.5), float(angle), 1.0),
        (LINE_PX, LINE_PX),
    )
    for angle in range(0, 180, 15)
]


def canonical(image: np.ndarray, scene: Scene) -> np.ndarray:
    """`image` turned back by the cake's rotation and scaled to `CANON_RADIUS`, the cake's centre at the middle."""
    centre = (float(scene.centre[0]), float(scene.centre[1]))
    warp = cv2.getRotationMatrix2D(centre, math.degrees(scene.rotation), CANON_RADIUS / scene.radius)
    warp[:, 2] += np.array([SIZE / 2, SIZE / 2]) - scene.centre
    return cv2.warpAffine(image, warp, (SIZE, SIZE), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def bandpass(image: np.ndarray) -> np.ndarray:
    """(H, W) float32: the grey image minus its 6 px blur, over its local mean amplitude (light and tone drop out)."""
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY).astype(np.float32)
    detail = grey - cv2.GaussianBlur(grey, (0, 0), 6)
    return detail / (cv2.GaussianBlur(np.abs(detail), (0, 0), 12) + 2)


def residual(part: np.ndarray, reference: np.ndarray, kind: str) -> np.ndarray:
    if kind == "bandpass":
        return cv2.GaussianBlur(np.abs(part - reference), (0, 0), 1.5)
    darker = np.maximum(reference - part, 0)
    return np.max([cv2.filter2D(darker, -1, k) for k in LINE_KERNELS], axis=0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", type=int, default=600)
    parser.add_argument("--seed", type=int, default=11, help="line seed (the calibration seed: 11)")
    parser.add_argument("--residual", choices=("bandpass", "dark-lines"), default="dark-lines")
    args = parser.parse_args(argv)
    line = MooncakeLine(seed=args.seed, defect_rate=0.5, size=SIZE)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    inner = np.hypot(xx - SIZE / 2, yy - SIZE / 2) < 0.85 * CANON_RADIUS
    references: dict[int, np.ndarray] = {}
    good: list[float] = []
    cracked: list[float] = []
    for index in range(args.parts):
        part = line.make_part(index)
        # The part's scene, drawn as `MooncakeLine.make_part` draws it (cake stream 0, noise stream 2).
        scene = make_scene(line._rng(index, 0), line._rng(index, 2), SIZE)
        if scene.mould not in references:
            if not len(part.boxes):  # the mould's first good part is its reference, not a part to score
                references[scene.mould] = bandpass(canonical(part.template, scene))
            continue
        diff = residual(bandpass(canonical(part.image, scene)), references[scene.mould], args.residual)
        score = float(np.percentile(diff[inner], 99.9))
        if not len(part.boxes):
            good.append(score)
        elif CRACK in part.class_ids:
            cracked.append(score)
    g, c = np.array(good), np.array(cracked)
    bar = float(np.percentile(g, 97.5))
    report = {
        "seed": args.seed,
        "parts": args.parts,
        "residual": args.residual,
        "moulds": len(references),
        "good": len(g),
        "cracked": len(c),
        "auc": round(float((c[:, None] > g[None, :]).mean()), 3),
        "cracked_caught_at_2.5pct_false_rejects": round(float((c > bar).mean()), 3),
    }
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
