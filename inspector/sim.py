"""Synthetic PCB production line: procedurally drawn DeepPCB-style parts with known defects.

Each part is a binarised 640x640 "scan" like DeepPCB's (about 48 px per mm): copper is black (0), the substrate
white (255) — DeepPCB's polarity, measured on its images (pin-holes are white spots in black copper, spurious
copper is a black blob on white). A board holds parallel trace buses with 45-degree jogs, octilinear nets between
pads and vias, through-hole component rows (annular pads with drill holes), SMD pad rows with fan-out traces,
mounting holes and copper pours with clearance rings around everything inside them.

A part is defect-free with probability `1 - defect_rate`; otherwise it carries 1..`max_defects` defects of the six
DeepPCB classes, each drawn at a known place and checked after drawing (the generator keeps a defect only when it
does what its class says, else it undoes it and tries elsewhere):

| id | class | drawn as | check (connected components in a window around it) |
| -- | --- | --- | --- |
| 0 | open | a gap cut across a trace | the trace falls apart: one more copper component |
| 1 | short | a copper bridge from a trace edge to the neighbouring copper | two copper components merge |
| 2 | mousebite | 1-4 small bites out of a trace edge | copper and substrate component counts unchanged |
| 3 | spur | a thin tapered protrusion from a trace edge | counts unchanged, the tip stays clear of copper |
| 4 | copper | an isolated blob on the substrate | one more copper component |
| 5 | pin-hole | a hole in a pour or pad, or a dash along a wide trace | one more substrate component |

Boxes: `SyntheticPart.boxes` are tight around the pixels each defect changed (image vs template); DeepPCB's own
annotations are looser, the defect plus about 10 px a side (measured on its 1,000 training pairs: median box 20 px
wider and taller than the changed pixels), so datasets and ground truth also carry `label_boxes` with that margin,
which is what a detector trained on DeepPCB draws.

Everything is deterministic by (seed, part index): part 7 of seed 0 is the same image on every machine and run,
whatever order parts are made in. `python -m inspector.sim --help` writes datasets and folders from the shell.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from inspector.config import SyntheticConfig
from inspector.dataset import DEEPPCB_NAMES, write_data_yaml
from inspector.types import SourceError

__all__ = [
    "COPPER",
    "LABEL_MARGIN",
    "PX_PER_MM",
    "SUBSTRATE",
    "PartTruth",
    "SyntheticLine",
    "SyntheticPart",
    "SyntheticSource",
    "main",
    "write_dataset",
    "write_folder",
]

COPPER = 0  # pixel value of copper in the binarised scan (DeepPCB: black)
SUBSTRATE = 255  # pixel value of bare board (DeepPCB: white)
PX_PER_MM = 48.0  # DeepPCB's scan resolution; feature sizes below are in pixels at this resolution
LABEL_MARGIN = 10  # px added on each side of a tight box to match DeepPCB's annotation style

OPEN, SHORT, MOUSEBITE, SPUR, SPURIOUS_COPPER, PIN_HOLE = range(6)
_NUM_CLASSES = len(DEEPPCB_NAMES)

# A drawing primitive: ("line", points (k, 2) int32, width px) | ("circle", centre (2,), radius px)
# | ("rect", corners (2, 2) int32 [[x0, y0], [x1, y1]], 0) | ("poly", points (k, 2) int32, 0)
# | ("hole", centre (2,), radius px): a drill hole, drawn as substrate inside the copper around it.
_Prim = tuple[str, np.ndarray, int]
_Trace = tuple[np.ndarray, int]  # a trace's centre line (k, 2) int32 and its width px


# --------------------------------------------------------------------------------------------------- results
@dataclass(frozen=True, slots=True)
class PartTruth:
    """Ground truth of one synthetic part, as carried with its frame.

    boxes: (n, 4) float32 xyxy px, tight around the pixels each defect changed.
    label_boxes: (n, 4) float32 xyxy px, `boxes` grown by `LABEL_MARGIN` and clipped: DeepPCB's annotation style.
    class_ids: (n,) int64 in 0..5 (`DEEPPCB_NAMES`); class_names the same as names.
    """

    index: int
    defective: bool
    boxes: np.ndarray
    label_boxes: np.ndarray
    class_ids: np.ndarray
    class_names: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: `{index, defective, defects: [{class_id, class_name, xyxy, label_xyxy}]}`."""
        return {
            "index": self.index,
            "defective": self.defective,
            "defects": [
                {
                    "class_id": int(c),
                    "class_name": name,
                    "xyxy": [float(v) for v in box],
                    "label_xyxy": [float(v) for v in label],
                }
                for box, label, c, name in zip(
                    self.boxes, self.label_boxes, self.class_ids, self.class_names, strict=True
                )
            ],
        }


@dataclass(frozen=True, slots=True)
class SyntheticPart:
    """One generated part.

    image: (H, W, 3) uint8 BGR, the inspected scan (binary: `COPPER` or `SUBSTRATE` in every channel).
    template: (H, W, 3) uint8 BGR, the same part without defects (DeepPCB's `_temp` image).
    boxes: (n, 4) float32 xyxy px, each tight around the pixels its defect changed (inclusive pixel extents
        as half-open boxes: a defect covering pixel columns 10..19 has x1=10, x2=20).
    class_ids: (n,) int64, DeepPCB class of each box.
    """

    index: int
    image: np.ndarray
    template: np.ndarray
    boxes: np.ndarray
    class_ids: np.ndarray

    @property
    def defective(self) -> bool:
        return len(self.boxes) > 0

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(DEEPPCB_NAMES[int(c)] for c in self.class_ids)

    def label_boxes(self, margin: float = LABEL_MARGIN) -> np.ndarray:
        """(n, 4) float32: `boxes` grown by `margin` px a side and clipped to the image (DeepPCB style)."""
        h, w = self.image.shape[:2]
        grown = self.boxes + np.array([-margin, -margin, margin, margin], np.float32)
        return np.clip(grown, 0, [w, h, w, h]).astype(np.float32)

    def truth(self) -> PartTruth:
        return PartTruth(
            index=self.index,
            defective=self.defective,
            boxes=self.boxes.copy(),
            label_boxes=self.label_boxes(),
            class_ids=self.class_ids.copy(),
            class_names=self.class_names,
        )

    def yolo_label(self, margin: float = LABEL_MARGIN) -> str:
        """Ultralytics label text: one `class cx cy w h` line per defect, normalised to [0, 1]."""
        h, w = self.image.shape[:2]
        rows = []
        for (x1, y1, x2, y2), c in zip(self.label_boxes(margin), self.class_ids, strict=True):
            rows.append(
                f"{int(c)} {(x1 + x2) / 2 / w:.6f} {(y1 + y2) / 2 / h:.6f} {(x2 - x1) / w:.6f} {(y2 - y1) / h:.6f}"
            )
        return "\n".join(rows) + ("\n" if rows else "")


# --------------------------------------------------------------------------------------------------- drawing
def _draw(canvas: np.ndarray, prims: list[_Prim], value: int, grow: int = 0, shift: int = 0) -> None:
    """Draw `prims` filled with `value`, every shape grown by `grow` px (clearance and keep-out rings).

    shift: draw at 1 / 2**shift scale (OpenCV fixed-point coordinates): the keep-out mask is half resolution.
    Line widths are rounded up at reduced scale, so shapes come out at least as big as asked.
    """
    scale = 1 << shift
    for kind, pts, size in prims:
        if kind == "line":
            cv2.polylines(canvas, [pts], False, value, -(-(size + 2 * grow) // scale), cv2.LINE_8, shift)
        elif kind == "circle":
            cv2.circle(canvas, (int(pts[0]), int(pts[1])), size + grow, value, -1, cv2.LINE_8, shift)
        elif kind == "rect":
            (x0, y0), (x1, y1) = pts
            p0, p1 = (int(x0) - grow, int(y0) - grow), (int(x1) + grow, int(y1) + grow)
            cv2.rectangle(canvas, p0, p1, value, -1, cv2.LINE_8, shift)
        elif kind == "poly":
            cv2.fillPoly(canvas, [pts], value, cv2.LINE_8, shift)
            if grow:
                cv2.polylines(canvas, [pts], True, value, -(-(2 * grow + 1) // scale), cv2.LINE_8, shift)
        # "hole" primitives only ever remove copper: they need no clearance and are drawn by `_draw_holes`.


def _draw_holes(canvas: np.ndarray, prims: list[_Prim]) -> None:
    for kind, pts, size in prims:
        if kind == "hole":
            cv2.circle(canvas, (int(pts[0]), int(pts[1])), size, SUBSTRATE, -1, cv2.LINE_8)


def _octilinear(a: np.ndarray, b: np.ndarray, axis_first: bool) -> np.ndarray:
    """Route from `a` to `b` with one axis-parallel and one 45-degree leg, as PCB routers do. (3, 2) int32."""
    dx, dy = b - a
    if abs(dx) >= abs(dy):  # the longer leg runs along x
        if axis_first:
            corner = np.array([b[0] - np.sign(dx) * abs(dy), a[1]])
        else:
            corner = np.array([a[0] + np.sign(dx) * abs(dy), b[1]])
    elif axis_first:
        corner = np.array([a[0], b[1] - np.sign(dy) * abs(dx)])
    else:
        corner = np.array([b[0], a[1] + np.sign(dy) * abs(dx)])
    return np.array([a, corner, b], np.int32)


# ---------------------------------------------------------------------------------------------- board layout
@dataclass(slots=True)
class _Group:
    """One keep-out unit: primitives that may touch each other (a net, a bus, a component)."""

    prims: list[_Prim]


class _Board:
    """Places groups of primitives with a copper-to-copper clearance, then renders the template.

    Keep-out: every placed group is drawn grown by half the clearance into `keepout`; a new group, also grown by
    half the clearance, is accepted only where it overlaps none of it, so any two groups end up about the
    clearance apart (and a group's clearance ring in a copper pour never eats a neighbour). The keep-out mask is
    half resolution, with a pixel of extra growth for the rounding: placement is most of a part's cost.
    """

    def __init__(self, size: int, clearance: int) -> None:
        self.size = size
        self.clearance = clearance
        self.half = clearance // 2 + 2
        low = (size + 1) // 2
        self.keepout = np.zeros((low, low), np.uint8)
        self.scratch = np.zeros((low, low), np.uint8)
        self.groups: list[_Group] = []
        self.pours: list[np.ndarray] = []
        # Trace centre lines, for the defects that live on a trace: (points (k, 2) int32, width px).
        self.traces: list[_Trace] = []

    def place(self, prims: list[_Prim], traces: list[_Trace]) -> bool:
        self.scratch[:] = 0
        _draw(self.scratch, prims, 255, self.half, shift=1)
        if not cv2.countNonZero(self.scratch):
            return False  # entirely outside the scan
        if cv2.countNonZero(cv2.bitwise_and(self.scratch, self.keepout)):
            return False
        cv2.bitwise_or(self.keepout, self.scratch, dst=self.keepout)
        self.groups.append(_Group(prims))
        self.traces.extend(traces)
        return True

    def render(self) -> np.ndarray:
        """(size, size) uint8 binary template: pours, then each group's clearance ring and copper, then holes."""
        img = np.full((self.size, self.size), SUBSTRATE, np.uint8)
        for poly in self.pours:
            cv2.fillPoly(img, [poly], COPPER, cv2.LINE_8)
        if self.pours:  # clearance rings only matter where a pour lies
            for group in self.groups:
                _draw(img, group.prims, SUBSTRATE, self.clearance)
        for group in self.groups:
            _draw(img, group.prims, COPPER)
            _draw_holes(img, group.prims)
        return img


def _trace_width(rng: np.random.Generator, most: int = 32) -> int:
    """A trace width in px: DeepPCB's boards mix thin signal traces (8-12 px) with wide power traces."""
    if rng.random() < 0.5:
        return int(rng.integers(8, 13))
    return int(rng.integers(14, max(15, most + 1)))


def _bus(rng: np.random.Generator, size: int) -> tuple[list[_Prim], list[_Trace]]:
    """2-8 parallel traces at a constant pitch with 0-2 shared 45-degree jogs, running edge to edge or to pads.

    Works in (u along, v across) coordinates. On a jog by D across, trace i bends at u = a - i*q (q = pitch*(sqrt2
    - 1)) for D > 0 (mirrored for D < 0), which keeps the diagonal legs exactly one pitch apart, like a router does.
    """
    n = int(rng.integers(2, 9))
    width = _trace_width(rng, 26)
    gap = int(rng.integers(max(8, width // 2), 24))
    pitch = width + gap
    q = pitch * (math.sqrt(2) - 1)
    v0 = float(rng.integers(-pitch * n // 2, size - pitch * n // 2))
    horizontal = bool(rng.random() < 0.5)
    # Each end either runs off the scan or stops at a staggered row of pads inside it.
    start_inside = rng.random() < 0.4
    end_inside = rng.random() < 0.4
    u_start = float(rng.integers(20, size // 3)) if start_inside else -30.0
    u_end = float(rng.integers(2 * size // 3, size - 20)) if end_inside else size + 30.0
    jogs: list[tuple[float, float]] = []
    span = u_end - u_start
    n_jogs = int(rng.integers(0, 3))
    for k in range(n_jogs):
        d = float(rng.integers(pitch, 4 * pitch)) * (1 if rng.random() < 0.5 else -1)
        a = u_start + span * (k + 1) / (n_jogs + 1) + float(rng.uniform(-20, 20))
        jogs.append((a, d))
    pad_r = width // 2 + int(rng.integers(4, 9))
    stagger = 2 * pad_r + 10
    prims: list[_Prim] = []
    traces: list[_Trace] = []
    for i in range(n):
        v = v0 + i * pitch
        s_off = (i % 2) * stagger if start_inside else 0.0
        e_off = (i % 2) * stagger if end_inside else 0.0
        pts = [(u_start - s_off, v)]
        for a, d in jogs:
            b = a - (i if d > 0 else n - 1 - i) * q
            pts += [(b, v), (b + abs(d), v + d)]
            v += d
        pts.append((u_end + e_off, v))
        arr = np.array(pts)
        if not horizontal:
            arr = arr[:, ::-1]
        arr = np.round(arr).astype(np.int32)
        prims.append(("line", arr, width))
        traces.append((arr, width))
        for end, inside in ((arr[0], start_inside), (arr[-1], end_inside)):
            if inside:
                prims.append(("circle", end, pad_r))
                if rng.random() < 0.5:
                    prims.append(("hole", end, max(3, pad_r // 3)))
    return prims, traces


def _net(rng: np.random.Generator, size: int) -> tuple[list[_Prim], list[_Trace]]:
    """A trace routed octilinearly between two pads or vias (either end may lie off the scan)."""
    width = _trace_width(rng)
    a = rng.integers(-40, size + 40, 2)
    b = rng.integers(-40, size + 40, 2)
    if np.abs(a - b).max() < 80:
        return [], []
    pts = _octilinear(a, b, bool(rng.random() < 0.5))
    prims: list[_Prim] = [("line", pts, width)]
    for end in (pts[0], pts[-1]):
        kind = rng.random()
        if kind < 0.45:  # via: small annular ring with a drill hole
            r = width // 2 + int(rng.integers(4, 8))
            prims += [("circle", end, r), ("hole", end, max(3, r // 2 - 1))]
        elif kind < 0.8:  # SMD pad
            hw, hh = int(rng.integers(width // 2 + 4, width + 14)), int(rng.integers(width // 2 + 4, width + 14))
            prims.append(("rect", np.stack([end - np.array((hw, hh)), end + np.array((hw, hh))]).astype(np.int32), 0))
        # else: the trace just ends (a round cap), as on a cropped scan
    return prims, [(pts, width)]


def _th_row(rng: np.random.Generator, size: int) -> tuple[list[_Prim], list[_Trace]]:
    """A row of through-hole pads (annular ring + drill) each with a trace leaving it, bending 45 degrees."""
    r = int(rng.integers(14, 29))
    hole = int(rng.integers(max(4, r // 4), r // 2 + 2))
    width = _trace_width(rng, 2 * r - 8)
    pitch = 2 * r + int(rng.integers(14, 40))
    n = int(rng.integers(2, 7))
    horizontal = bool(rng.random() < 0.5)
    u0 = float(rng.integers(-pitch, size - pitch))
    v0 = float(rng.integers(r, size - r))
    out = 1 if rng.random() < 0.5 else -1  # which side the traces leave to
    run = float(rng.integers(40, 200))
    bend = float(rng.integers(0, 2)) * out * float(rng.integers(20, 80))
    prims: list[_Prim] = []
    traces: list[_Trace] = []
    for i in range(n):
        u = u0 + i * pitch
        pts = np.array(
            [
                (u, v0),
                (u, v0 + out * run),
                (u + bend, v0 + out * (run + abs(bend))),
                (u + bend, v0 + out * (run + abs(bend) + 400)),
            ]
        )
        centre = np.array([u, v0])
        if not horizontal:
            pts, centre = pts[:, ::-1], centre[::-1]
        pts = np.round(pts).astype(np.int32)
        centre = np.round(centre).astype(np.int32)
        prims += [("line", pts, width), ("circle", centre, r), ("hole", centre, hole)]
        traces.append((pts[1:], width))  # the first leg lies under the pad
    return prims, traces


def _smd_row(rng: np.random.Generator, size: int) -> tuple[list[_Prim], list[_Trace]]:
    """A row of rectangular SMD pads with fan-out traces (straight, or 45-degree to a wider pitch)."""
    pw = int(rng.integers(16, 44))  # pad size across the row
    ph = int(rng.integers(30, 80))  # pad size along the trace
    gap = int(rng.integers(10, 30))
    pitch = pw + gap
    n = int(rng.integers(2, 9))
    width = _trace_width(rng, pw - 2)
    horizontal = bool(rng.random() < 0.5)
    u0 = float(rng.integers(-pitch, size - pitch))
    v0 = float(rng.integers(0, size - ph))
    fan = float(rng.integers(0, 3)) * 0.5  # extra pitch factor after the fan-out
    prims: list[_Prim] = []
    traces: list[_Trace] = []
    mid = (n - 1) / 2
    for i in range(n):
        u = u0 + i * pitch
        du = (i - mid) * pitch * fan
        pts = np.array(
            [
                (u + pw / 2, v0 + ph),
                (u + pw / 2, v0 + ph + 30 + abs(i - mid) * 4),
                (u + pw / 2 + du, v0 + ph + 30 + abs(i - mid) * 4 + abs(du)),
                (u + pw / 2 + du, v0 + ph + 700),
            ]
        )
        rect = np.array([(u, v0), (u + pw, v0 + ph)])
        if not horizontal:
            pts, rect = pts[:, ::-1], rect[:, ::-1]
        pts = np.round(pts).astype(np.int32)
        prims += [("line", pts, width), ("rect", np.round(rect).astype(np.int32), 0)]
        traces.append((pts, width))
    return prims, traces


def _mount(rng: np.random.Generator, size: int) -> tuple[list[_Prim], list[_Trace]]:
    """A big annular pad (mounting hole or connector pin), like DeepPCB's large round shapes."""
    r = int(rng.integers(35, 90))
    c = rng.integers(-r // 2, size + r // 2, 2).astype(np.int32)
    return [("circle", c, r), ("hole", c, int(r * rng.uniform(0.35, 0.6)))], []


def _pour(rng: np.random.Generator, size: int) -> np.ndarray:
    """A copper pour: a big polygon with chamfered corners, often running off the scan. (k, 2) int32."""
    x0, y0 = rng.integers(-size // 2, size // 2, 2)
    w, h = rng.integers(size // 3, size, 2)
    c = int(rng.integers(10, max(11, min(w, h) // 3)))
    x1, y1 = x0 + w, y0 + h
    pts = [
        (x0 + c, y0),
        (x1 - c, y0),
        (x1, y0 + c),
        (x1, y1 - c),
        (x1 - c, y1),
        (x0 + c, y1),
        (x0, y1 - c),
        (x0, y0 + c),
    ]
    return np.array(pts, np.int32)


_MAKERS: tuple[tuple[Callable[[np.random.Generator, int], tuple[list[_Prim], list[_Trace]]], float], ...] = (
    (_bus, 0.34),
    (_net, 0.26),
    (_th_row, 0.14),
    (_smd_row, 0.18),
    (_mount, 0.08),
)


def _layout(rng: np.random.Generator, size: int) -> _Board:
    board = _Board(size, clearance=int(rng.integers(7, 14)))
    if rng.random() < 0.5:
        board.pours = [_pour(rng, size) for _ in range(int(rng.integers(1, 3)))]
    makers = [m for m, _ in _MAKERS]
    cumulative = np.cumsum([w for _, w in _MAKERS])
    want = int(rng.integers(5, 13))
    misses = 0
    # Bounded attempts: most candidates on a filling board collide, and each costs a draw; a crowded board
    # just ends up with fewer groups.
    for _ in range(4 * want):
        maker = makers[min(int(np.searchsorted(cumulative, rng.random() * cumulative[-1])), len(makers) - 1)]
        prims, traces = maker(rng, size)
        if prims and board.place(prims, traces):
            misses = 0
            if len(board.groups) >= want:
                break
        else:
            misses += 1
            if misses >= 8:
                break
    return board


# ----------------------------------------------------------------------------------------------------- defects
def _window(box: tuple[int, int, int, int], margin: int, size: int) -> tuple[slice, slice]:
    x0, y0, x1, y1 = box
    return slice(max(0, y0 - margin), min(size, y1 + margin)), slice(max(0, x0 - margin), min(size, x1 + margin))


def _components(binary: np.ndarray) -> int:
    """Number of 8-connected foreground components in a (h, w) uint8 0/1 image."""
    return int(cv2.connectedComponents(binary, connectivity=8)[0]) - 1


def _rot(v: np.ndarray, angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([c * v[0] - s * v[1], s * v[0] + c * v[1]])


def _pix(img: np.ndarray, p: np.ndarray) -> int:
    """Pixel value at float point `p` (x, y); points outside the scan read as copper (never "free")."""
    x, y = round(float(p[0])), round(float(p[1]))
    if 0 <= x < img.shape[1] and 0 <= y < img.shape[0]:
        return int(img[y, x])
    return COPPER


class _DefectPainter:
    """Draws one defect of a class onto a (size, size) uint8 image at a random valid place, or reports failure.

    Each `_shape_*` method returns the polygons/ellipses to fill and the value (or None when it found no place);
    `paint` draws them, finds the changed pixels, checks the class's component rule and the distance to earlier
    defects, and undoes the drawing when anything fails.
    """

    def __init__(self, rng: np.random.Generator, img: np.ndarray, traces: list[_Trace]) -> None:
        self.rng = rng
        self.img = img
        self.size = img.shape[0]
        # Defects on traces need straight legs long enough to keep away from bends and pads.
        segments = [
            (pts[i].astype(float), pts[i + 1].astype(float), w) for pts, w in traces for i in range(len(pts) - 1)
        ]
        self.segments = [s for s in segments if np.linalg.norm(s[1] - s[0]) >= 2 * s[2] + 30]
        lengths = np.array([np.linalg.norm(s[1] - s[0]) for s in self.segments])
        self.seg_p = lengths / lengths.sum() if len(lengths) else None
        self.boxes: list[tuple[int, int, int, int]] = []

    # -- places
    def _on_trace(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, int] | None:
        """A random point on a trace's centre line, away from its ends and inside the scan: (c, d, n, width)."""
        if self.seg_p is None:
            return None
        p0, p1, width = self.segments[int(self.rng.choice(len(self.segments), p=self.seg_p))]
        length = float(np.linalg.norm(p1 - p0))
        d = (p1 - p0) / length
        t = self.rng.uniform(width + 15, length - width - 15)
        c = p0 + d * t
        if not (12 <= c[0] < self.size - 12 and 12 <= c[1] < self.size - 12):
            return None
        if _pix(self.img, c) != COPPER:
            return None  # e.g. cut by an earlier defect or under a hole
        return c, d, np.array([-d[1], d[0]]), width

    # -- shapes: (polygons (each (k, 2) float), value) or None
    def _shape_open(self) -> tuple[list[np.ndarray], int] | None:
        at = self._on_trace()
        if at is None:
            return None
        c, d, n, width = at
        theta = self.rng.uniform(-0.5, 0.5)  # cracks are rarely square to the trace
        nn, dd = _rot(n, theta), _rot(d, theta)
        half = (width / 2 + self.rng.uniform(1.5, 3.0)) / math.cos(theta)
        g = self.rng.uniform(4.0, 12.0) / 2
        quad = np.array(
            [c + nn * half + dd * g, c + nn * half - dd * g, c - nn * half - dd * g, c - nn * half + dd * g]
        )
        quad += self.rng.uniform(-1.5, 1.5, quad.shape)
        return [quad], SUBSTRATE

    def _shape_mousebite(self) -> tuple[list[np.ndarray], int] | None:
        at = self._on_trace()
        if at is None:
            return None
        c, d, n, width = at
        side = 1 if self.rng.random() < 0.5 else -1
        edge = c + side * n * (width / 2)
        shapes = []
        along = 0.0
        for _ in range(int(self.rng.integers(1, 5))):
            # Bites reach at most r * 1.5 deep: 0.6 of the width, so the trace always keeps copper beside them.
            r = self.rng.uniform(3.0, max(3.5, min(8.0, width * 0.4)))
            centre = edge + d * along - side * n * r * self.rng.uniform(0.0, 0.5)
            shapes.append(
                cv2.ellipse2Poly(
                    tuple(np.round(centre).astype(int)),
                    (round(r), round(r * self.rng.uniform(0.7, 1.0))),
                    int(self.rng.integers(0, 180)),
                    0,
                    360,
                    30,
                ).astype(np.float64)
            )
            along += r * self.rng.uniform(1.2, 2.2)
        return shapes, SUBSTRATE

    def _shape_spur(self) -> tuple[list[np.ndarray], int] | None:
        at = self._on_trace()
        if at is None:
            return None
        c, _, n, width = at
        b, tip_w = self.rng.uniform(2.5, 6.0), self.rng.uniform(0.8, 2.5)
        first = 1 if self.rng.random() < 0.5 else -1
        for side in (first, -first):  # neighbours are often closer on one side of a trace than the other
            base = c + side * n * (width / 2 - 1)
            out = _rot(side * n, self.rng.uniform(-0.6, 0.6))
            across = np.array([-out[1], out[0]])
            # Free room: how far the spur and a 3 px ring around it stay on bare board (never touching copper).
            free = 0.0
            for k in np.arange(3.0, 31.0, 1.5):
                if any(_pix(self.img, base + out * k + across * off) != SUBSTRATE for off in (-b - 3, 0.0, b + 3)):
                    break
                free = k
            if free - 4 < 10.0:
                continue
            tip = base + out * self.rng.uniform(10.0, min(26.0, free - 4))
            quad = np.array([base + across * b, tip + across * tip_w, tip - across * tip_w, base - across * b])
            return [quad], COPPER
        return None

    def _shape_short(self) -> tuple[list[np.ndarray], int] | None:
        at = self._on_trace()
        if at is None:
            return None
        c, d, n, width = at
        side = 1 if self.rng.random() < 0.5 else -1
        out = side * n
        edge = c + out * (width / 2 + 0.5)
        hit = next((k for k in range(1, 40) if _pix(self.img, edge + out * k) == COPPER), None)
        if hit is None or hit < 3:
            return None
        slant = d * self.rng.uniform(-0.35, 0.35) * hit
        end = edge + out * hit + slant
        if _pix(self.img, end + out * 3) != COPPER:
            end = edge + out * hit  # the slanted end would miss the neighbour: go straight across
        start = edge - out * 2.5
        stop = end + out * 2.5  # overlap both coppers so the bridge really connects them
        axis = (stop - start) / np.linalg.norm(stop - start)
        across = np.array([-axis[1], axis[0]])
        w0, w1 = self.rng.uniform(2.0, 6.0), self.rng.uniform(2.0, 6.0)
        quad = np.array([start + across * w0, stop + across * w1, stop - across * w1, start - across * w0])
        return [quad + self.rng.uniform(-0.8, 0.8, quad.shape)], COPPER

    def _shape_blob(self, value: int) -> tuple[list[np.ndarray], int] | None:
        """Spurious copper (a blob on bare board) or a pin-hole (a hole in copper): 1-3 overlapping ellipses."""
        extent = self.rng.uniform(6.0, 14.0) if value == COPPER else self.rng.uniform(5.0, 9.0)
        c = self.rng.uniform(14, self.size - 14, 2)
        r = int(extent * 1.5) + 3  # everything around must be what the blob is not, with room to spare
        y, x = int(c[1]), int(c[0])
        window = self.img[max(0, y - r) : y + r + 1, max(0, x - r) : x + r + 1]
        if window.size == 0 or not np.all(window == (SUBSTRATE if value == COPPER else COPPER)):
            return None
        shapes = []
        for _ in range(int(self.rng.integers(1, 4))):
            centre = c + self.rng.uniform(-extent / 2, extent / 2, 2)
            axes = (
                max(2, round(self.rng.uniform(0.6, 1.0) * extent)),
                max(2, round(self.rng.uniform(0.4, 0.8) * extent)),
            )
            shapes.append(
                cv2.ellipse2Poly(
                    tuple(np.round(centre).astype(int)), axes, int(self.rng.integers(0, 180)), 0, 360, 20
                ).astype(np.float64)
            )
            # Scanned blobs are ragged, not ellipses: wobble the outline by up to a pixel and a half.
            shapes[-1] += self.rng.uniform(-1.5, 1.5, shapes[-1].shape)
        return shapes, (COPPER if value == COPPER else SUBSTRATE)

    def _shape(self, cls: int) -> tuple[list[np.ndarray], int] | None:
        if cls == OPEN:
            return self._shape_open()
        if cls == SHORT:
            return self._shape_short()
        if cls == MOUSEBITE:
            return self._shape_mousebite()
        if cls == SPUR:
            return self._shape_spur()
        if cls == SPURIOUS_COPPER:
            return self._shape_blob(COPPER)
        # Pin-holes sit in pours and pads, or (as often in DeepPCB) as a dash along a wide trace.
        if self.rng.random() < 0.5:
            return self._shape_trace_hole()
        return self._shape_blob(SUBSTRATE)

    def _shape_trace_hole(self) -> tuple[list[np.ndarray], int] | None:
        at = self._on_trace()
        if at is None:
            return None
        c, d, _, width = at
        if width < 14:
            return None
        across = self.rng.uniform(2.0, (width - 8) / 2)  # half-width: at least 4 px of copper stays each side
        along = self.rng.uniform(across, max(across, 9.0))
        angle = math.degrees(math.atan2(d[1], d[0])) + self.rng.uniform(-10, 10)
        centre = tuple(np.round(c).astype(int))
        poly = cv2.ellipse2Poly(centre, (round(along), round(across)), round(angle), 0, 360, 20)
        return [poly.astype(np.float64)], SUBSTRATE

    # -- drawing and checking
    def paint(self, cls: int, tries: int = 25) -> tuple[int, int, int, int] | None:
        """Draw one defect of `cls`; return its tight half-open box (x0, y0, x1, y1), or None if none fitted."""
        for _ in range(tries):
            shape = self._shape(cls)
            if shape is None:
                continue
            polys, value = shape
            pts = [np.round(p).astype(np.int32) for p in polys]
            allpts = np.concatenate(pts)
            # The drawing's extent plus room for the check window around the box (6 px) and a spare pixel.
            region = (
                int(allpts[:, 0].min()) - 8,
                int(allpts[:, 1].min()) - 8,
                int(allpts[:, 0].max()) + 9,
                int(allpts[:, 1].max()) + 9,
            )
            ys, xs = _window(region, 0, self.size)
            before = self.img[ys, xs].copy()
            cv2.fillPoly(self.img, pts, value, cv2.LINE_8)
            box = self._accept(cls, before, ys, xs)
            if box is None:
                self.img[ys, xs] = before
                continue
            self.boxes.append(box)
            return box
        return None

    def _accept(self, cls: int, before: np.ndarray, ys: slice, xs: slice) -> tuple[int, int, int, int] | None:
        """The tight box of what the drawing changed in `img[ys, xs]` (was `before`), if the defect is valid."""
        after = self.img[ys, xs]
        rows, cols = np.nonzero(after != before)
        if len(rows) < 6:
            return None  # too small to see (or drawn where the pixels already were)
        box = (
            xs.start + int(cols.min()),
            ys.start + int(rows.min()),
            xs.start + int(cols.max()) + 1,
            ys.start + int(rows.max()) + 1,
        )
        if box[0] < 2 or box[1] < 2 or box[2] > self.size - 2 or box[3] > self.size - 2:
            return None  # a defect cut by the scan's edge has an ambiguous box
        gap = 6  # keep defects apart so every box holds only its own defect's pixels
        for b in self.boxes:
            if box[0] < b[2] + gap and b[0] < box[2] + gap and box[1] < b[3] + gap and b[1] < box[3] + gap:
                return None
        # The class rule, on a window 6 px around the box (inside the saved region): component counts.
        wy, wx = _window(box, 6, self.size)
        local = (slice(wy.start - ys.start, wy.stop - ys.start), slice(wx.start - xs.start, wx.stop - xs.start))
        cu_after = (after[local] == COPPER).astype(np.uint8)
        cu_before = (before[local] == COPPER).astype(np.uint8)
        d_cu = _components(cu_after) - _components(cu_before)
        d_sub = _components(1 - cu_after) - _components(1 - cu_before)
        ok = {
            OPEN: d_cu == 1,
            SHORT: d_cu == -1,
            MOUSEBITE: d_cu == 0 and d_sub == 0,
            SPUR: d_cu == 0 and d_sub == 0,
            SPURIOUS_COPPER: d_cu == 1 and d_sub == 0,
            PIN_HOLE: d_sub == 1 and d_cu == 0,
        }[cls]
        return box if ok else None


# ------------------------------------------------------------------------------------------------------- line
class SyntheticLine:
    """A deterministic stream of synthetic PCB parts.

    seed: the line's seed (any int); part `index` of a seed is always the same part.
    defect_rate: probability in [0, 1] that a part carries defects.
    size: square scan size in px; feature sizes stay at DeepPCB's ~48 px/mm, so a larger size is a larger crop.
    max_defects: a defective part carries 1..max_defects defects (DeepPCB's scans carry 4-10, 5th-95th
        percentile, median 7; a production line's bad part usually has few, so the default is 4).
    """

    def __init__(self, seed: int = 0, defect_rate: float = 0.3, size: int = 640, max_defects: int = 4) -> None:
        if not 0.0 <= defect_rate <= 1.0:
            raise ValueError(f"defect_rate must be in [0, 1], got {defect_rate}")
        if size < 64:
            raise ValueError(f"size must be at least 64 px, got {size}")
        if max_defects < 1:
            raise ValueError(f"max_defects must be at least 1, got {max_defects}")
        self.seed = seed
        self.defect_rate = defect_rate
        self.size = size
        self.max_defects = max_defects

    @classmethod
    def from_config(cls, config: SyntheticConfig) -> SyntheticLine:
        return cls(seed=config.seed, defect_rate=config.defect_rate, size=config.size)

    def _rng(self, index: int, stream: int) -> np.random.Generator:
        # SeedSequence wants non-negative words: fold the (possibly negative) seed into 64 bits.
        return np.random.default_rng([self.seed & 0xFFFFFFFFFFFFFFFF, index & 0xFFFFFFFFFFFFFFFF, stream])

    def make_part(self, index: int) -> SyntheticPart:
        """Generate part `index` (deterministic by seed and index; a few ms at 640x640)."""
        # Separate streams: whether a part is defective (and what) does not change its board, so the same
        # board appears good at defect_rate 0 and bad at defect_rate 1.
        board = _layout(self._rng(index, 0), self.size)
        template = board.render()
        img = template.copy()
        rng = self._rng(index, 1)
        boxes: list[tuple[int, int, int, int]] = []
        classes: list[int] = []
        if rng.random() < self.defect_rate:
            painter = _DefectPainter(rng, img, board.traces)
            want = int(rng.integers(1, self.max_defects + 1))
            order = rng.permutation(_NUM_CLASSES).tolist()
            cls_seq = [int(rng.integers(0, _NUM_CLASSES)) for _ in range(want)]
            for cls in cls_seq:
                # A class that finds no place on this board (e.g. no trace for an open) hands over to the others.
                for candidate in [cls, *[c for c in order if c != cls]]:
                    box = painter.paint(candidate)
                    if box is not None:
                        boxes.append(box)
                        classes.append(candidate)
                        break
        return SyntheticPart(
            index=index,
            image=cv2.cvtColor(img, cv2.COLOR_GRAY2BGR),
            template=cv2.cvtColor(template, cv2.COLOR_GRAY2BGR),
            boxes=np.array(boxes, np.float32).reshape(-1, 4),
            class_ids=np.array(classes, np.int64),
        )


# ----------------------------------------------------------------------------------------------------- source
class SyntheticSource:
    """The synthetic line as a `FrameSource`: parts 0, 1, 2, ... with their `PartTruth`.

    fps: parts per second; `read()` returns each part at its slot on a fixed schedule (like a conveyor). When
        the reader falls behind by more than one slot, the schedule restarts from now instead of bursting.
        None: as fast as parts can be generated.
    limit: stop (read returns None) after this many parts; None runs forever.
    A reopen continues with the next part, as a camera would after a reconnect.
    """

    def __init__(self, config: SyntheticConfig, fps: float | None = None, limit: int | None = None) -> None:
        if fps is not None and fps <= 0:
            raise ValueError(f"fps must be positive, got {fps}")
        if limit is not None and limit < 0:
            raise ValueError(f"limit must be >= 0, got {limit}")
        self.line = SyntheticLine.from_config(config)
        self.fps = fps
        self.limit = limit
        self.index = 0
        self._open = False
        self._due = 0.0
        rate = f"{fps:g} parts/s" if fps else "unpaced"
        self.description = (
            f"synthetic PCB line (seed {config.seed}, defect rate {config.defect_rate:g}, {config.size} px, {rate})"
        )

    def open(self) -> None:
        self._open = True
        self._due = time.monotonic()

    def read(self) -> tuple[np.ndarray, PartTruth] | None:
        """Next part: ((H, W, 3) uint8 BGR image, its `PartTruth`), or None after `limit` parts."""
        if not self._open:
            raise SourceError("synthetic source read before open()")
        if self.limit is not None and self.index >= self.limit:
            return None
        part = self.line.make_part(self.index)
        self.index += 1
        if self.fps:
            # Generate first, then wait for the slot: the part appears on time, not one generation late.
            now = time.monotonic()
            if now < self._due:
                time.sleep(self._due - now)
                self._due += 1.0 / self.fps
            elif now - self._due > 1.0 / self.fps:
                self._due = now + 1.0 / self.fps  # fell behind: no catch-up burst
            else:
                self._due += 1.0 / self.fps
        return part.image, part.truth()

    def close(self) -> None:
        self._open = False


# ----------------------------------------------------------------------------------------------------- writers
def write_dataset(
    out: Path,
    n: int,
    seed: int = 0,
    defect_rate: float = 0.5,
    val_fraction: float = 0.2,
    size: int = 640,
    margin: float = LABEL_MARGIN,
    image_ext: str = "jpg",
) -> dict[str, int]:
    """Write `n` synthetic parts as an Ultralytics YOLO dataset, in the layout of `inspector.dataset`.

    OUT/images/{train,val}/syn_<index>.<ext>, OUT/labels/{train,val}/syn_<index>.txt (boxes grown by `margin` px,
    DeepPCB style), OUT/templates/{train,val}/syn_<index>.<ext> (defect-free), OUT/data.yaml (names = DeepPCB's
    six), OUT/split.json. The split is a seeded shuffle of indices, like `import_deeppcb`; `val_fraction=1` puts
    every part in `val` (a set for `inspector eval` / `inspector calibrate`). Returns counts.
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    if not 0.0 <= val_fraction <= 1.0:
        raise ValueError(f"val_fraction must be in [0, 1], got {val_fraction}")
    line = SyntheticLine(seed=seed, defect_rate=defect_rate, size=size)
    order = list(range(n))
    random.Random(seed).shuffle(order)
    n_val = round(n * val_fraction)
    val = set(order[:n_val])
    counts = {"train": 0, "val": 0, "boxes": 0, "defective": 0}
    split_of: dict[str, list[str]] = {"train": [], "val": []}
    for split in ("train", "val"):
        for sub in ("images", "labels", "templates"):
            (out / sub / split).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        part = line.make_part(i)
        split = "val" if i in val else "train"
        stem = f"syn_{i:06d}"
        _imwrite(out / "images" / split / f"{stem}.{image_ext}", part.image)
        _imwrite(out / "templates" / split / f"{stem}.{image_ext}", part.template)
        (out / "labels" / split / f"{stem}.txt").write_text(part.yolo_label(margin))
        split_of[split].append(stem)
        counts[split] += 1
        counts["boxes"] += len(part.boxes)
        counts["defective"] += int(part.defective)
    write_data_yaml(out)
    meta = {"generator": "inspector.sim", "seed": seed, "defect_rate": defect_rate, "size": size, "margin": margin}
    (out / "split.json").write_text(json.dumps({**meta, "val_fraction": val_fraction, **split_of}, indent=1))
    return counts


def write_folder(
    out: Path,
    n: int,
    seed: int = 0,
    defect_rate: float = 0.3,
    size: int = 640,
    image_ext: str = "png",
    start: int = 0,
) -> Path:
    """Write parts `start..start+n-1` as OUT/good/part_<index>.<ext> and OUT/bad/part_<index>.<ext>.

    The manifest OUT/truth.json holds `{generator, seed, defect_rate, size, parts: [{file, **PartTruth.to_dict()}]}`
    with `file` relative to OUT, in index order. PNG by default: lossless, so the pixels are the truth's.
    Returns the manifest's path.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    line = SyntheticLine(seed=seed, defect_rate=defect_rate, size=size)
    (out / "good").mkdir(parents=True, exist_ok=True)
    (out / "bad").mkdir(parents=True, exist_ok=True)
    parts = []
    for i in range(start, start + n):
        part = line.make_part(i)
        rel = f"{'bad' if part.defective else 'good'}/part_{i:06d}.{image_ext}"
        _imwrite(out / rel, part.image)
        parts.append({"file": rel, **part.truth().to_dict()})
    manifest = out / "truth.json"
    meta = {"generator": "inspector.sim", "seed": seed, "defect_rate": defect_rate, "size": size}
    manifest.write_text(json.dumps({**meta, "parts": parts}, indent=1))
    return manifest


def _imwrite(path: Path, image: np.ndarray) -> None:
    params = [cv2.IMWRITE_JPEG_QUALITY, 95] if path.suffix.lower() in {".jpg", ".jpeg"} else []
    if not cv2.imwrite(str(path), image, params):
        raise OSError(f"{path}: could not write the image")


# --------------------------------------------------------------------------------------------------------- cli
def main(argv: list[str] | None = None) -> int:
    """`python -m inspector.sim {dataset,folder,bench}`: write synthetic data or time the generator."""
    parser = argparse.ArgumentParser(prog="python -m inspector.sim", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="action", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--seed", type=int, default=0)
    common.add_argument("--size", type=int, default=640)
    p = sub.add_parser("dataset", parents=[common], help="write a YOLO dataset (images, labels, data.yaml)")
    p.add_argument("out", type=Path)
    p.add_argument("-n", type=int, default=500)
    p.add_argument("--defect-rate", type=float, default=0.5)
    p.add_argument("--val-fraction", type=float, default=0.2)
    p = sub.add_parser("folder", parents=[common], help="write good/ and bad/ images with truth.json")
    p.add_argument("out", type=Path)
    p.add_argument("-n", type=int, default=100)
    p.add_argument("--defect-rate", type=float, default=0.3)
    p = sub.add_parser("bench", parents=[common], help="time part generation")
    p.add_argument("-n", type=int, default=200)
    p.add_argument("--defect-rate", type=float, default=1.0)
    args = parser.parse_args(argv)
    try:
        if args.action == "dataset":
            counts = write_dataset(args.out, args.n, args.seed, args.defect_rate, args.val_fraction, args.size)
            print(json.dumps({"out": str(args.out), **counts}))
        elif args.action == "folder":
            manifest = write_folder(args.out, args.n, args.seed, args.defect_rate, args.size)
            print(json.dumps({"out": str(args.out), "manifest": str(manifest), "parts": args.n}))
        else:
            line = SyntheticLine(args.seed, args.defect_rate, args.size)
            times = []
            for i in range(args.n):
                t0 = time.perf_counter()
                line.make_part(i)
                times.append((time.perf_counter() - t0) * 1e3)
            ms = np.array(times)
            print(
                json.dumps(
                    {
                        "parts": args.n,
                        "size": args.size,
                        "defect_rate": args.defect_rate,
                        "ms_mean": round(float(ms.mean()), 2),
                        "ms_p50": round(float(np.median(ms)), 2),
                        "ms_p95": round(float(np.percentile(ms, 95)), 2),
                        "ms_max": round(float(ms.max()), 2),
                    }
                )
            )
    except (OSError, ValueError) as exc:
        print(f"inspector.sim: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
