"""`inspector calibrate MODEL DATA`: per-class confidence thresholds for a target escape or false-reject rate.

Both modes run the detector once over the split (`inspector.evaluate.collect`, score floor 0.001) and reduce
each image to a score per class: the confidence at which that class would reject the image under the base
thresholds' other rules (area, ROI, max count; see `inspector.evaluate.class_scores`). A part is rejected when
any class's score reaches its threshold, exactly as `inspector.decide` does.

--max-escape E (defective images and defect-free templates): thresholds that let at most E of the defective
  images pass, with the fewest defect-free images rejected. Greedy: start with every class at the floor (the
  fewest escapes); then repeatedly raise the one class threshold whose raise removes the most false rejects per
  escape added (free raises first), while the escape budget holds; stop when no raise removes a false reject.
  The same again starting from the best single threshold shared by all classes; the better result is kept.
  Among raises that do the same, the smallest raise wins (the most margin against escapes). A heuristic,
  not an exhaustive search: the achieved rates are recomputed from the written thresholds and reported.
--max-false-reject R: thresholds that reject at most R of the good images. Every class starts just above
  (`--margin`) its highest score on a good image (no false reject). With defect-free images only (a line that has
  only good parts at hand), while the budget holds, the class whose next step down lowers its threshold the most
  per false reject added moves down (steps that add none first). With labelled defective images too, the budget
  goes where it catches the most: the move of one class down that catches the most defective images per false
  reject added, while the budget holds (`fit_fewest_escapes`; the good-only fit is kept when it lets fewer pass).

--box-f1 (with --max-escape): first, per class, the threshold at which its box F-score on the split peaks
  (`inspector.accuracy.f1_best_thresholds`, the criterion `inspector eval` counts P/R/F with); those become the
  classes' floors and the escape fit runs above them. Where the escape target cannot hold above them, the plain fit
  is kept and the summary says so (`box_f1.used`). For a line whose reports count boxes, not only verdicts.
--iou: the NMS IoU of the detection pass; give the line's `model.iou`, so the calibrator sees the boxes the line will.

With --max-escape, thresholds sit halfway between adjacent observed scores (never on one), so that a score a hair
away on another machine does not flip a decision; with --max-false-reject, `--margin` above the good score they
must pass. None is below `--floor` (a detection that weak is noise the sample cannot vouch for), and 1.0 means
"this class never rejects" in practice.

Outputs: the thresholds YAML (loadable as `inspector.types.Thresholds`; provenance in comment lines), a PNG of
the trade-off (escape rate against false-reject rate: one threshold for all classes swept from floor to 1, the
per-class greedy optimum for every escape budget, and the chosen point), and a JSON summary next to them.

A reference model takes its references as in `inspector eval` (composites of a reference-diff data.yaml as they are,
`--reference IMAGE`, or NAME_test/NAME_temp pairs); an image that does not register scores 1.0 for every class (the
line rejects it fail-safe whatever the thresholds), and the summary's `reference` says how many did not.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import yaml

from inspector.accuracy import DetectionAccumulator, f1_best_thresholds, inspection_rates, rejected
from inspector.evaluate import (
    Collected,
    collect,
    load_data,
    load_thresholds,
    registration_report,
    scores_matrix,
)
from inspector.reference_inputs import add_reference_arguments
from inspector.types import Thresholds

__all__ = [
    "Calibration",
    "box_f1_floors",
    "candidate_thresholds",
    "draw_tradeoff",
    "fit_fewest_escapes",
    "fit_max_escape",
    "fit_max_false_reject",
    "main",
    "sweep_global",
    "thresholds_yaml",
]


def candidate_thresholds(scores: np.ndarray, floor: float) -> np.ndarray:
    """Ascending thresholds that realise every distinct decision of one class on these scores.

    scores: (n,) one class's scores over all images (negative: no detection). Returns (k,): `floor` (rejects
    every score >= floor), the midpoints between adjacent distinct scores above the floor, and 1.0 (rejects only
    a score of exactly 1.0, i.e. in practice nothing).
    """
    s = np.unique(scores[scores >= floor])  # sorted, distinct
    mids = (s[:-1] + s[1:]) / 2 if s.size > 1 else np.zeros(0)
    return np.unique(np.concatenate(([floor], mids, [1.0])))


@dataclass(slots=True)
class Calibration:
    """One fitted set of thresholds and its rates on the calibration images.

    thresholds: (nc,) min_confidence per class id. escape_rate / false_reject_rate: fractions in [0, 1].
    feasible: whether the target was met (False: the closest the floor allows was returned).
    """

    thresholds: np.ndarray
    escape_rate: float
    false_reject_rate: float
    feasible: bool


def _count_below(sorted_scores: np.ndarray, t: np.ndarray) -> np.ndarray:
    """For each threshold in t (k,), how many of the sorted scores are < t (pass)."""
    return np.searchsorted(sorted_scores, t, side="left")


def _raise_greedily(
    defective: np.ndarray, good: np.ndarray, cands: list[np.ndarray], idx: np.ndarray, budget: int
) -> np.ndarray:
    """Greedy raises from the candidate indices `idx` (nc,) while escapes stay <= budget; returns the indices."""
    nc = len(cands)
    idx = idx.copy()
    while True:
        t = np.array([cands[c][idx[c]] for c in range(nc)])
        esc_now = int((~rejected(defective, t)).sum())
        fr_now = int(rejected(good, t).sum())
        if esc_now > budget:
            break  # infeasible from here: nothing to trade
        best_key: tuple[float, int, float] | None = None
        best_move = (0, 0)
        for c in range(nc):
            higher = cands[c][idx[c] + 1 :]
            if higher.size == 0:
                continue
            others = [k for k in range(nc) if k != c]
            def_free = ~rejected(defective[:, others], t[others])  # not rejected by another class
            good_free = ~rejected(good[:, others], t[others])
            # Escapes and false rejects if class c moved to each higher candidate, the others fixed.
            esc = _count_below(np.sort(defective[def_free, c]), higher)
            # A good image is rejected by another class, or by c unless its score is below the threshold.
            fr = len(good) - _count_below(np.sort(good[good_free, c]), higher)
            gain, cost = fr_now - fr, esc - esc_now  # false rejects removed, escapes added (>= 0)
            for j in np.flatnonzero((esc <= budget) & (gain > 0)):
                # Free raises first (largest gain), then the best gain per escape; ties: the smaller raise in
                # confidence (the most margin against escapes), then the lower class id.
                key = (float("inf") if cost[j] <= 0 else gain[j] / cost[j], int(gain[j]), -float(higher[j] - t[c]))
                if best_key is None or key > best_key:
                    best_key, best_move = key, (c, idx[c] + 1 + int(j))
        if best_key is None:
            break
        idx[best_move[0]] = best_move[1]
    return idx


def fit_max_escape(
    defective: np.ndarray, good: np.ndarray, max_escape: float, floor: float | np.ndarray = 0.05
) -> Calibration:
    """Greedy per-class thresholds: escapes <= max_escape of the defective images, fewest false rejects.

    defective: (n_def, nc) class scores of defective images; good: (n_good, nc) of defect-free images; floor:
    one floor for every class, or (nc,) floors (`--box-f1`). Two starts, the better result kept (fewer false
    rejects, then fewer escapes, then the first): every class at its floor, and every class at (the candidate just
    below) the best single threshold shared by all classes, or its floor when that is higher, so the result is
    never worse than one shared threshold.
    """
    nc = defective.shape[1]
    floors = np.broadcast_to(np.asarray(floor, dtype=np.float64), (nc,))
    cands = [candidate_thresholds(np.concatenate([defective[:, c], good[:, c]]), floors[c]) for c in range(nc)]
    budget = int(np.floor(max_escape * len(defective) + 1e-9))
    starts = [np.zeros(nc, int)]  # the fewest escapes these floors allow
    shared = sweep_global(defective, good, float(floors.min()), steps=1001)
    fits = shared[np.floor(shared[:, 1] * len(defective) + 1e-9) <= budget]
    if len(fits):
        t_shared = fits[-1, 0]  # the highest shared threshold within budget: fewest false rejects
        # The highest candidate <= t_shared rejects everything t_shared does (no score lies between them).
        starts.append(np.array([max(0, int(np.searchsorted(cands[c], t_shared, side="right")) - 1) for c in range(nc)]))
    best: Calibration | None = None
    for start in starts:
        idx = _raise_greedily(defective, good, cands, start, budget)
        t = np.array([cands[c][idx[c]] for c in range(nc)])
        esc_rate, fr_rate = inspection_rates(defective, good, t)
        fit = Calibration(t, esc_rate, fr_rate, feasible=esc_rate <= max_escape + 1e-12)
        if best is None or (fit.feasible, -fit.false_reject_rate, -fit.escape_rate) > (
            best.feasible,
            -best.false_reject_rate,
            -best.escape_rate,
        ):
            best = fit
    assert best is not None
    return best


def _clean_start(good: np.ndarray, floor: float, margin: float) -> tuple[list[np.ndarray], np.ndarray]:
    """The false-reject fits' candidates per class (the floor, and each good score plus `margin`) and their start:
    per class the index of the lowest candidate that rejects none of the good images on its own."""
    cands, idx = [], np.zeros(good.shape[1], int)
    for c in range(good.shape[1]):
        s = np.unique(good[good[:, c] >= floor, c])
        cands.append(np.unique(np.concatenate(([floor], np.minimum(s + margin, 1.0)))))
        clean = np.flatnonzero([(good[:, c] >= t).sum() == 0 for t in cands[c]])
        idx[c] = clean[0] if clean.size else len(cands[c]) - 1  # none clean: a good score of exactly 1.0
    return cands, idx


def fit_max_false_reject(
    good: np.ndarray, max_false_reject: float, floor: float = 0.05, margin: float = 0.01
) -> Calibration:
    """Low (sensitive) per-class thresholds rejecting at most `max_false_reject` of the defect-free images.

    good: (n_good, nc) class scores of defect-free images. Candidates per class: the floor, and each observed
    score plus `margin` (so a good image passes with that much room). Greedy from the top: every class starts
    at its lowest candidate that rejects no good image; then the one class whose next lower candidate buys the
    largest drop in threshold per false reject added (free drops first) moves down, while the budget holds.
    Escapes are unknown here (NaN).
    """
    n, nc = good.shape
    cands, idx = _clean_start(good, floor, margin)
    budget = int(np.floor(max_false_reject * n + 1e-9))
    while True:
        t = np.array([cands[c][idx[c]] for c in range(nc)])
        fr_now = int(rejected(good, t).sum())
        best_key: tuple[float, float] | None = None
        best_move = (0, 0)
        for c in range(nc):
            lower = cands[c][: idx[c]]
            if lower.size == 0:
                continue
            free = ~rejected(good[:, [k for k in range(nc) if k != c]], np.delete(t, c))
            fr = n - _count_below(np.sort(good[free, c]), lower)  # as in fit_max_escape
            drop, cost = t[c] - lower, fr - fr_now
            for j in np.flatnonzero(fr <= budget):
                key = (float("inf") if cost[j] <= 0 else drop[j] / cost[j], float(drop[j]))
                if best_key is None or key > best_key:
                    best_key, best_move = key, (c, int(j))
        if best_key is None:
            break
        idx[best_move[0]] = best_move[1]
    t = np.array([cands[c][idx[c]] for c in range(nc)])
    fr_rate = float(rejected(good, t).mean()) if n else 0.0
    return Calibration(t, float("nan"), fr_rate, feasible=fr_rate <= max_false_reject + 1e-12)


def fit_fewest_escapes(
    defective: np.ndarray, good: np.ndarray, max_false_reject: float, floor: float = 0.05, margin: float = 0.01
) -> Calibration:
    """Per-class thresholds with the fewest escapes among those rejecting at most `max_false_reject` of the good
    images: `fit_max_false_reject` when the labelled defective images can choose where the budget goes.

    defective: (n_def, nc) class scores of defective images; good: (n_good, nc) of defect-free ones. Candidates
    per class as in `fit_max_false_reject` (the floor, and each good score plus `margin`: between two good scores
    the lowest threshold catches the most defects for the same false rejects). Greedy from the same start (no
    false reject): the move, of one class to any lower candidate, that catches the most defective images per false
    reject added (free catches first) is taken while the budget holds; a drop that catches nothing is not taken
    (it would spend margin against false rejects on unseen parts for no measured gain). Two results are compared,
    this and `fit_max_false_reject`'s, and the one with fewer escapes (then fewer false rejects) kept, so the labels
    never make the fit worse.
    """
    n, nc = good.shape
    plain = fit_max_false_reject(good, max_false_reject, floor, margin)
    if not len(defective):
        return plain
    cands, idx = _clean_start(good, floor, margin)
    budget = int(np.floor(max_false_reject * n + 1e-9))
    while True:
        t = np.array([cands[c][idx[c]] for c in range(nc)])
        esc_now = int((~rejected(defective, t)).sum())
        fr_now = int(rejected(good, t).sum())
        best_key: tuple[float, int, float] | None = None
        best_move = (0, 0)
        for c in range(nc):
            lower = cands[c][: idx[c]]
            if lower.size == 0:
                continue
            others = [k for k in range(nc) if k != c]
            def_free = ~rejected(defective[:, others], t[others])  # not caught by another class already
            good_free = ~rejected(good[:, others], t[others])
            esc = _count_below(np.sort(defective[def_free, c]), lower)
            fr = n - _count_below(np.sort(good[good_free, c]), lower)
            gain, cost = esc_now - esc, fr - fr_now  # defective images caught, false rejects added (>= 0)
            for j in np.flatnonzero((fr <= budget) & (gain > 0)):
                # Free catches first, then the most catches per false reject; ties: more catches, then the
                # smaller drop in confidence (the most margin against false rejects).
                key = (float("inf") if cost[j] <= 0 else gain[j] / cost[j], int(gain[j]), -float(t[c] - lower[j]))
                if best_key is None or key > best_key:
                    best_key, best_move = key, (c, int(j))
        if best_key is None:
            break
        idx[best_move[0]] = best_move[1]
    t = np.array([cands[c][idx[c]] for c in range(nc)])
    esc_rate, fr_rate = inspection_rates(defective, good, t)
    fit = Calibration(t, esc_rate, fr_rate, feasible=fr_rate <= max_false_reject + 1e-12)
    plain.escape_rate = inspection_rates(defective, good, plain.thresholds)[0]
    return min((fit, plain), key=lambda f: (not f.feasible, f.escape_rate, f.false_reject_rate))


def box_f1_floors(collected: Collected, floor: float) -> np.ndarray:
    """(nc,) per class the threshold (>= floor) at which its box F-score on the collected split peaks, under the
    criterion `inspector eval` reports P/R/F with (class match, IoU > 0.33; `inspector.accuracy`)."""
    acc = DetectionAccumulator(nc=len(collected.names))
    for dets, gt in zip(collected.detections, collected.gt, strict=True):
        acc.add(dets.xyxy, dets.confidence, dets.class_id, *gt)
    return f1_best_thresholds(*acc.deeppcb_matches(), len(collected.names), floor)


def sweep_global(defective: np.ndarray, good: np.ndarray, floor: float, steps: int = 200) -> np.ndarray:
    """(steps, 3) rows (threshold, escape rate, false-reject rate) for one threshold shared by all classes."""
    ts = np.linspace(floor, 1.0, steps)
    t = np.repeat(ts[:, None], defective.shape[1], axis=1)
    esc = (~rejected(defective, t)).mean(axis=1) if len(defective) else np.zeros(steps)
    fr = rejected(good, t).mean(axis=1) if len(good) else np.zeros(steps)
    return np.stack([ts, esc, fr], axis=1)


def _pareto(defective: np.ndarray, good: np.ndarray, floor: float, max_points: int = 25) -> np.ndarray:
    """(k, 2) (escape rate, false-reject rate) of the per-class greedy fit for escape budgets 0, 1, 2, ... images."""
    n = len(defective)
    if n == 0:
        return np.zeros((0, 2))
    points = []
    # Every budget of 0..10 images (where a line operates), then coarser steps up to all of them.
    budgets = np.concatenate([np.arange(min(n, 10) + 1), np.linspace(0, n, max_points - 10).round()])
    for k in np.unique(budgets.astype(int)):
        fit = fit_max_escape(defective, good, k / n, floor)
        points.append((fit.escape_rate, fit.false_reject_rate))
    return np.array(points)


def draw_tradeoff(
    path: Path,
    sweep: np.ndarray,
    pareto: np.ndarray,
    point: tuple[float, float],
    target: tuple[str, float],
    title: str,
) -> None:
    """Draw the trade-off PNG with OpenCV (no matplotlib on the edge).

    sweep: (k, 3) from `sweep_global`; pareto: (m, 2) (escape, false reject); point: the chosen (escape, false
    reject), escape NaN when unknown; target: ("escape" | "false_reject", rate). Axes: x false-reject rate,
    y escape rate, both in percent on square-root scales.
    """
    w, h, ml, mr, mt, mb = 900, 620, 80, 30, 60, 70
    img = np.full((h, w, 3), 255, np.uint8)
    pw, ph = w - ml - mr, h - mt - mb

    def scale(rate: float) -> float:
        # Square-root axes: 0-100 % stays in view while the few-percent corner that matters gets room.
        return float(np.sqrt(min(max(rate, 0.0), 1.0)))

    def xy(esc: float, fr: float) -> tuple[int, int]:
        return ml + round(pw * scale(fr)), mt + ph - round(ph * scale(esc))

    font, grey, black = cv2.FONT_HERSHEY_SIMPLEX, (200, 200, 200), (0, 0, 0)
    for tick in (0, 1, 2, 5, 10, 20, 30, 50, 75, 100):  # grid and tick labels, in percent
        x, y = xy(tick / 100, tick / 100)
        cv2.line(img, (x, mt), (x, mt + ph), grey, 1)
        cv2.line(img, (ml, y), (ml + pw, y), grey, 1)
        cv2.putText(img, f"{tick:g}", (x - 8, mt + ph + 20), font, 0.45, black, 1, cv2.LINE_AA)
        cv2.putText(img, f"{tick:g}", (ml - 40, y + 5), font, 0.45, black, 1, cv2.LINE_AA)
    cv2.rectangle(img, (ml, mt), (ml + pw, mt + ph), black, 1)
    cv2.putText(
        img,
        "false-reject rate (% of defect-free images rejected)",
        (ml + 150, h - 20),
        font,
        0.55,
        black,
        1,
        cv2.LINE_AA,
    )
    cv2.putText(img, "escape rate (% of defective images passed)", (ml, mt - 12), font, 0.55, black, 1, cv2.LINE_AA)
    cv2.putText(img, title[:100], (10, 22), font, 0.55, black, 1, cv2.LINE_AA)
    kind, rate = target
    if kind == "escape":
        y = xy(rate, 0)[1]
        cv2.line(img, (ml, y), (ml + pw, y), (0, 0, 220), 1, cv2.LINE_AA)
    else:
        x = xy(0, rate)[0]
        cv2.line(img, (x, mt), (x, mt + ph), (0, 0, 220), 1, cv2.LINE_AA)
    if len(sweep):
        pts = np.array([xy(e, f) for _, e, f in sweep], np.int32)
        cv2.polylines(img, [pts], False, (200, 120, 0), 2, cv2.LINE_AA)
    if len(pareto):
        order = np.argsort(pareto[:, 1])
        pts = np.array([xy(e, f) for e, f in pareto[order]], np.int32)
        cv2.polylines(img, [pts], False, (0, 150, 0), 2, cv2.LINE_AA)
        for p in pts:
            cv2.circle(img, tuple(int(v) for v in p), 3, (0, 150, 0), -1, cv2.LINE_AA)
    if np.isfinite(point[0]):
        cv2.circle(img, xy(*point), 7, (0, 0, 220), 2, cv2.LINE_AA)
    else:  # escapes unknown: mark the false-reject rate on the x axis
        cv2.circle(img, xy(0, point[1]), 7, (0, 0, 220), 2, cv2.LINE_AA)
    legend = [
        ((200, 120, 0), "one threshold for every class (swept)"),
        ((0, 150, 0), "per-class thresholds (greedy, each escape budget)"),
        ((0, 0, 220), f"target ({kind.replace('_', '-')} <= {100 * rate:g}%) and the chosen thresholds"),
    ]
    for i, (colour, text) in enumerate(legend):
        y = mt + 20 + 22 * i
        cv2.line(img, (ml + pw - 400, y - 5), (ml + pw - 370, y - 5), colour, 2)
        cv2.putText(img, text, (ml + pw - 362, y), font, 0.45, black, 1, cv2.LINE_AA)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), img):
        raise OSError(f"{path}: could not write the PNG")


def thresholds_yaml(base: Thresholds, names: dict[int, str], values: np.ndarray, header: list[str]) -> str:
    """The YAML text: `base` with each class's min_confidence set (classes keyed by name), header as comments."""
    data = base.model_dump(mode="json")
    classes = dict(data.get("classes") or {})
    for c, name in names.items():
        rule = dict(classes.get(name) or data["default"])
        rule["min_confidence"] = round(float(values[c]), 6)
        classes[name] = rule
    data["classes"] = classes
    Thresholds.model_validate(data)  # what we write must load
    body = yaml.safe_dump(data, sort_keys=False)
    return "".join(f"# {line}\n" for line in header) + body


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="inspector calibrate", description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, help="ONNX model")
    parser.add_argument("data", type=Path, help="data.yaml or YOLO folder (the split and its templates)")
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--max-escape", type=float, help="largest share of defective images allowed to pass")
    target.add_argument("--max-false-reject", type=float, help="largest share of defect-free images rejected")
    parser.add_argument("-o", "--out", type=Path, help="thresholds YAML (default calibration/<model stem>.yaml)")
    parser.add_argument("--split", default="val", help="split to calibrate on (val)")
    parser.add_argument("--thresholds", type=Path, help="base thresholds (area, ROI, max_count kept; default none)")
    parser.add_argument("--floor", type=float, default=0.05, help="no threshold below this (0.05)")
    parser.add_argument(
        "--margin", type=float, default=0.01, help="--max-false-reject: room above a good image's score (0.01)"
    )
    parser.add_argument(
        "--box-f1",
        action="store_true",
        help="--max-escape: raise each class's floor to where its box F-score on the split peaks (as `inspector "
        "eval` counts P/R/F), then fit the escape target above those floors; kept only where the target still holds",
    )
    parser.add_argument("--conf", type=float, default=0.001, help="detector score floor of the pass (0.001)")
    parser.add_argument("--iou", type=float, default=0.7, help="NMS IoU of the pass: the line's model.iou (0.7)")
    parser.add_argument("--batch", type=int, help="images per inference call")
    parser.add_argument("--threads", type=int, default=0, help="onnxruntime intra-op threads (0: its choice)")
    add_reference_arguments(parser)
    args = parser.parse_args(argv)
    if args.box_f1 and args.max_escape is None:
        print("inspector calibrate: --box-f1 goes with --max-escape (it needs labelled images)", file=sys.stderr)
        return 2
    rate = args.max_escape if args.max_escape is not None else args.max_false_reject
    box_f1: dict[str, Any] | None = None
    if not 0.0 <= rate < 1.0 or not 0.0 < args.floor < 1.0 or args.conf > args.floor or not 0.0 < args.iou <= 1.0:
        print(
            "inspector calibrate: the target must be in [0, 1), the floor in (0, 1), --conf <= --floor and --iou in "
            "(0, 1]",
            file=sys.stderr,
        )
        return 2
    out = args.out or Path("calibration") / f"{args.model.stem}.yaml"
    t0 = time.perf_counter()
    try:
        base = load_thresholds(args.thresholds)
        data = load_data(args.data, args.split)
        collected = collect(
            args.model,
            data,
            conf=args.conf,
            iou=args.iou,
            batch=args.batch,
            threads=args.threads,
            reference=args.reference,
            motion=args.motion,
        )
    except (OSError, ValueError) as exc:
        print(f"inspector calibrate: {exc}", file=sys.stderr)
        return 1
    defective, good = scores_matrix(collected, base)
    names = collected.names
    if args.max_escape is not None:
        if not len(defective):
            print("inspector calibrate: --max-escape needs defective (labelled) images", file=sys.stderr)
            return 1
        fit = fit_max_escape(defective, good, args.max_escape, args.floor)
        if args.box_f1:
            f1_floors = box_f1_floors(collected, args.floor)
            f1_fit = fit_max_escape(defective, good, args.max_escape, f1_floors)
            box_f1 = {"floors": {names[c]: round(float(f1_floors[c]), 6) for c in names}, "used": f1_fit.feasible}
            if f1_fit.feasible:  # escapes come first: floors that break the target are not used
                fit = f1_fit
        goal: tuple[str, float] = ("escape", args.max_escape)
    else:
        if not len(good):
            print("inspector calibrate: --max-false-reject needs defect-free images (templates)", file=sys.stderr)
            return 1
        # with labelled defective images the budget goes where it catches the most; without, the good-only fit
        fit = fit_fewest_escapes(defective, good, args.max_false_reject, args.floor, args.margin)
        goal = ("false_reject", args.max_false_reject)
    # Round as written, then recompute: the reported rates are those of the file.
    written = np.round(fit.thresholds, 6)
    esc, fr = inspection_rates(defective, good, written)
    if goal[0] == "false_reject":
        esc = esc if len(defective) else float("nan")
    feasible = (esc <= goal[1] + 1e-12) if goal[0] == "escape" else (fr <= goal[1] + 1e-12)
    when = time.strftime("%Y-%m-%d %H:%M:%S")
    header = [
        f"inspector calibrate {when}: {goal[0].replace('_', '-')} <= {goal[1]:g}, floor {args.floor:g}"
        + ("" if box_f1 is None else f", box-F floors {'used' if box_f1['used'] else 'not used (target broken)'}")
        + f", NMS IoU {args.iou:g}",
        f"model {args.model.name} sha256 {collected.sha256}",
        f"data {data.source} split {args.split}: {len(defective)} defective, {len(good)} defect-free images",
        f"on those images: escape rate {esc:.4f}, false-reject rate {fr:.4f}"
        + ("" if feasible else "  (TARGET NOT MET at this floor)"),
        f"the line's detector floor (model.conf) must be <= {float(written.min()):.6g} for these rules to see every "
        "box",
    ]
    try:
        text = thresholds_yaml(base, names, written, header)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
        png = out.with_suffix(".png")
        draw_tradeoff(
            png,
            sweep_global(defective, good, args.floor),
            _pareto(defective, good, args.floor) if len(defective) else np.zeros((0, 2)),
            (esc, fr),
            goal,
            f"{args.model.name}: {len(defective)} defective, {len(good)} defect-free images ({args.split})",
        )
        summary: dict[str, Any] = {
            "thresholds_file": str(out),
            "png": str(png),
            "model": str(args.model),
            "sha256": collected.sha256,
            "data": data.source,
            "target": {goal[0]: goal[1]},
            "floor": args.floor,
            "box_f1": box_f1,
            "iou": args.iou,
            "feasible": bool(feasible),
            "escape_rate": None if np.isnan(esc) else round(esc, 5),
            "false_reject_rate": round(fr, 5),
            "defective_images": len(defective),
            "good_images": len(good),
            "min_confidence": {names[c]: float(written[c]) for c in names},
            "images_per_s": round(collected.images_per_s, 1),
            "reference": registration_report(collected),
            "seconds": round(time.perf_counter() - t0, 1),
        }
        out.with_suffix(".json").write_text(json.dumps(summary, indent=1) + "\n")
    except OSError as exc:
        print(f"inspector calibrate: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(summary))
    if not feasible:
        print(
            f"inspector calibrate: target not met ({goal[0]} {goal[1]:g}); lower --floor or improve the model",
            file=sys.stderr,
        )
        return 3
    return 0
