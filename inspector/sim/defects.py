"""Defects on a board: paints one defect of a DeepPCB class at a random valid place, with its tight box.

Each defect is drawn at a known place and checked after drawing (the painter keeps a defect only when it does
what its class says, else it undoes it and tries elsewhere):

| id | class | drawn as | check (connected components in a window around it) |
| -- | --- | --- | --- |
| 0 | open | a gap cut across a trace | the trace falls apart: one more copper component |
| 1 | short | a copper bridge from a trace edge to the neighbouring copper | two copper components merge |
| 2 | mousebite | 1-4 small bites out of a trace edge | copper and substrate component counts unchanged |
| 3 | spur | a thin tapered protrusion from a trace edge | counts unchanged, the tip stays clear of copper |
| 4 | copper | an isolated blob on the substrate | one more copper component |
| 5 | pin-hole | a hole in a pour or pad, or a dash along a wide trace | one more substrate component |

A box is tight around the pixels its defect changed (image vs template) and keeps 6 px away from the others.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from inspector.sim.board import COPPER, SUBSTRATE, Trace

__all__ = ["MOUSEBITE", "OPEN", "PIN_HOLE", "SHORT", "SPUR", "SPURIOUS_COPPER", "DefectPainter"]

OPEN, SHORT, MOUSEBITE, SPUR, SPURIOUS_COPPER, PIN_HOLE = range(6)


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


class DefectPainter:
    """Draws one defect of a class onto a (size, size) uint8 image at a random valid place, or reports failure.

    Each `_shape_*` method returns the polygons/ellipses to fill and the value (or None when it found no place);
    `paint` draws them, finds the changed pixels, checks the class's component rule and the distance to earlier
    defects, and undoes the drawing when anything fails.
    """

    def __init__(self, rng: np.random.Generator, img: np.ndarray, traces: list[Trace]) -> None:
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
