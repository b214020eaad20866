"""The defect-free board: procedurally drawn, DeepPCB-style copper layouts (the template of a synthetic part).

A scan is binarised like DeepPCB's (about 48 px per mm): copper is black (0), the substrate white (255) —
DeepPCB's polarity, measured on its images (pin-holes are white spots in black copper, spurious copper is a
black blob on white). A board holds parallel trace buses with 45-degree jogs, octilinear nets between pads and
vias, through-hole component rows (annular pads with drill holes), SMD pad rows with fan-out traces, mounting
holes and copper pours with clearance rings around everything inside them. `layout(rng, size)` places them;
`Board.render()` draws the template; `Board.traces` are the centre lines the defect painter works on.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

__all__ = ["COPPER", "PX_PER_MM", "SUBSTRATE", "Board", "Prim", "Trace", "layout"]

COPPER = 0  # pixel value of copper in the binarised scan (DeepPCB: black)
SUBSTRATE = 255  # pixel value of bare board (DeepPCB: white)
PX_PER_MM = 48.0  # DeepPCB's scan resolution; feature sizes below are in pixels at this resolution

# A drawing primitive: ("line", points (k, 2) int32, width px) | ("circle", centre (2,), radius px)
# | ("rect", corners (2, 2) int32 [[x0, y0], [x1, y1]], 0) | ("poly", points (k, 2) int32, 0)
# | ("hole", centre (2,), radius px): a drill hole, drawn as substrate inside the copper around it.
Prim = tuple[str, np.ndarray, int]
Trace = tuple[np.ndarray, int]  # a trace's centre line (k, 2) int32 and its width px


# --------------------------------------------------------------------------------------------------- drawing
def _draw(canvas: np.ndarray, prims: list[Prim], value: int, grow: int = 0, shift: int = 0) -> None:
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


def _draw_holes(canvas: np.ndarray, prims: list[Prim]) -> None:
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

    prims: list[Prim]


class Board:
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
        self.traces: list[Trace] = []

    def place(self, prims: list[Prim], traces: list[Trace]) -> bool:
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


def _bus(rng: np.random.Generator, size: int) -> tuple[list[Prim], list[Trace]]:
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
    prims: list[Prim] = []
    traces: list[Trace] = []
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


def _net(rng: np.random.Generator, size: int) -> tuple[list[Prim], list[Trace]]:
    """A trace routed octilinearly between two pads or vias (either end may lie off the scan)."""
    width = _trace_width(rng)
    a = rng.integers(-40, size + 40, 2)
    b = rng.integers(-40, size + 40, 2)
    if np.abs(a - b).max() < 80:
        return [], []
    pts = _octilinear(a, b, bool(rng.random() < 0.5))
    prims: list[Prim] = [("line", pts, width)]
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


def _th_row(rng: np.random.Generator, size: int) -> tuple[list[Prim], list[Trace]]:
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
    prims: list[Prim] = []
    traces: list[Trace] = []
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


def _smd_row(rng: np.random.Generator, size: int) -> tuple[list[Prim], list[Trace]]:
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
    prims: list[Prim] = []
    traces: list[Trace] = []
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


def _mount(rng: np.random.Generator, size: int) -> tuple[list[Prim], list[Trace]]:
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


_MAKERS: tuple[tuple[Callable[[np.random.Generator, int], tuple[list[Prim], list[Trace]]], float], ...] = (
    (_bus, 0.34),
    (_net, 0.26),
    (_th_row, 0.14),
    (_smd_row, 0.18),
    (_mount, 0.08),
)


def layout(rng: np.random.Generator, size: int) -> Board:
    """A board drawn from `rng`: a clearance, pours on half the boards, then 5-12 groups placed where they fit."""
    board = Board(size, clearance=int(rng.integers(7, 14)))
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
