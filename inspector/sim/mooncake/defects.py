"""Defects on a mooncake: paints one defect of a class into the cake's state, re-renders, and keeps it only when
it is visible, apart from the others and fully inside its tight box. The six classes (ids 0..5: crack, burnt,
misshapen, blurred_imprint, foreign_speck, underbaked) and how each is drawn: the package's docstring."""

from __future__ import annotations

import math

import cv2
import numpy as np

from inspector.sim.mooncake.mould import N_MOULDS, SQUARE_MOULDS, ellipse
from inspector.sim.mooncake.render import OUTLINE_SAMPLES, THETA, Shape, State, Win, render
from inspector.sim.mooncake.scene import Scene

__all__ = [
    "BLURRED_IMPRINT",
    "BURNT",
    "CRACK",
    "DIFF_THRESHOLD",
    "FOREIGN_SPECK",
    "MISSHAPEN",
    "UNDERBAKED",
    "DefectPainter",
]

CRACK, BURNT, MISSHAPEN, BLURRED_IMPRINT, FOREIGN_SPECK, UNDERBAKED = range(6)
DIFF_THRESHOLD = 10  # grey levels: a pixel is changed when a channel differs from the template by more than this
_MIN_CHANGED_PX = 12  # a defect must change at least this many pixels (at BASE_SIZE) to count as visible

# BGR colours (0..255)
_PALE = np.array([152, 204, 234], np.float32)
_BURNT = np.array([16, 24, 40], np.float32)
_CRACK_INSIDE = np.array([22, 40, 70], np.float32)  # the dark filling seen through a crack
_SPECK_COLOURS = (
    (0.55, (26, 26, 30)),  # charcoal / dirt
    (0.15, (175, 95, 25)),  # blue plastic
    (0.10, (40, 40, 175)),  # red
    (0.10, (50, 140, 55)),  # green
    (0.10, (150, 150, 148)),  # grey metal
)


class DefectPainter:
    """Applies one defect of a class to the cake's state, re-renders, and keeps it if it is visible and apart.

    Each `_apply_*` method changes `state` inside a window it returns (None: it found no place; the whole image
    for a changed outline). `paint` renders the window again, takes the pixels that changed beyond
    `DIFF_THRESHOLD` from the previous image as the defect's, checks their count, the box against the image edge
    and earlier boxes, and that every pixel that now differs from the template lies in some box; on failure it
    restores the state and tries again.
    """

    def __init__(self, rng: np.random.Generator, scene: Scene, state: State, template: np.ndarray) -> None:
        self.rng = rng
        self.scene = scene
        self.state = state
        self.template = template
        self.image = template
        self.size = scene.size
        self.k = scene.k
        self.boxes: list[tuple[int, int, int, int]] = []
        self.covered = np.zeros((self.size, self.size), bool)
        self.full: Win = (slice(0, self.size), slice(0, self.size))

    @property
    def _shape(self) -> Shape:
        assert self.state.shape is not None  # the template was rendered from this state
        return self.state.shape

    # -- places
    def _rho_at(self, a: float) -> float:
        return float(self.state.rho[round(a / (2 * math.pi) * OUTLINE_SAMPLES) % OUTLINE_SAMPLES])

    def _inside(self, inset: float, reach: float = 0.0) -> np.ndarray | None:
        """A random point (x, y) px inside the cake, at least `inset` px from its edge (uniform over the area) and
        `reach` px clear of earlier defects' boxes; None when 16 draws found none."""
        for _ in range(16):
            a = float(self.rng.uniform(0, 2 * math.pi))
            r = math.sqrt(float(self.rng.random())) * max(0.0, self._rho_at(a) - inset)
            p = self._polar(a, r)
            if self._clear(p, reach):
                return p
        return None

    def _clear(self, p: np.ndarray, reach: float) -> bool:
        """Whether point `p` lies more than `reach` px (plus the gap) from every earlier box: a cheap pre-check that
        saves renders that `_accept` would refuse."""
        gap = 4 * self.k
        for x0, y0, x1, y1 in self.boxes:
            dx = max(x0 - gap - p[0], 0.0, p[0] - (x1 + gap))
            dy = max(y0 - gap - p[1], 0.0, p[1] - (y1 + gap))
            if math.hypot(dx, dy) <= reach:
                return False
        return True

    def _polar(self, a: float, r: float) -> np.ndarray:
        b = a + self.scene.rotation
        return self.scene.centre + r * np.array([math.cos(b), math.sin(b)])

    def _window(self, lo: np.ndarray, hi: np.ndarray) -> Win | None:
        """The window of px from `lo` to `hi` (x, y floats, inclusive) clipped to the image; None when empty."""
        x0, y0 = max(0, math.floor(lo[0])), max(0, math.floor(lo[1]))
        x1, y1 = min(self.size, math.ceil(hi[0]) + 1), min(self.size, math.ceil(hi[1]) + 1)
        if x0 >= x1 or y0 >= y1:
            return None
        return slice(y0, y1), slice(x0, x1)

    def _blob(self, centre: np.ndarray, r: float, n: int, soft: float) -> tuple[np.ndarray, Win] | None:
        """1..n overlapping ellipses around `centre` blurred by `soft` px: (h, w) float32 weights and their window."""
        reach = 1.5 * r + 3 * soft + 2
        win = self._window(centre - reach, centre + reach)
        if win is None:
            return None
        m = np.zeros((win[0].stop - win[0].start, win[1].stop - win[1].start), np.uint8)
        offset = np.array([win[1].start, win[0].start])
        for _ in range(n):
            c = centre - offset + self.rng.uniform(-r / 2, r / 2, 2)
            axes = (max(1.0, float(self.rng.uniform(0.5, 1.0)) * r), max(1.0, float(self.rng.uniform(0.35, 0.8)) * r))
            poly = ellipse(c, axes, float(self.rng.uniform(0, math.pi)))
            cv2.fillPoly(m, [np.round(poly * 16).astype(np.int32)], 255, cv2.LINE_AA, 4)
        w = m.astype(np.float32) * (1 / 255)
        return (cv2.GaussianBlur(w, (0, 0), soft) if soft > 0 else w), win

    def _cake_blob(self, centre: np.ndarray, r: float, n: int, soft: float) -> tuple[np.ndarray, Win] | None:
        """`_blob`'s weights times the cake's coverage: a patch on the cake that stops at its edge."""
        blob = self._blob(centre, r, n, soft)
        if blob is None:
            return None
        w, win = blob
        w *= self._shape.alpha_full[win]
        return w, win

    # -- defects
    def _apply_crack(self) -> Win | None:
        rng, k, st = self.rng, self.k, self.state
        sev = float(rng.random())
        length = (25 + 110 * sev) * k
        p = self._inside(10 * k, 0.6 * length)
        if p is None:
            return None
        heading = float(rng.uniform(0, 2 * math.pi))
        paths = [self._walk(p, heading, length)]
        if rng.random() < 0.5:  # branches leave the main crack at an angle
            main = paths[0]
            for _ in range(int(rng.integers(1, 3))):
                start = main[int(rng.integers(len(main) // 4, max(len(main) // 4 + 1, 3 * len(main) // 4)))]
                turn = float(rng.uniform(0.5, 1.1)) * (1 if rng.random() < 0.5 else -1)
                paths.append(self._walk(start, heading + turn, length * float(rng.uniform(0.2, 0.5))))
        width = max(1, round((1 + 2 * float(rng.random()) * sev) * k))
        dark = 0.3 + 0.6 * float(rng.random())
        every = np.concatenate(paths)
        reach = width + 4 * k + 2
        win = self._window(every.min(0) - reach, every.max(0) + reach)
        if win is None:
            return None
        offset = np.array([win[1].start, win[0].start])
        m = np.zeros((win[0].stop - win[0].start, win[1].stop - win[1].start), np.uint8)
        lines = [np.round((q - offset) * 16).astype(np.int32) for q in paths]
        cv2.polylines(m, lines, False, 255, width, cv2.LINE_AA, 4)
        c = m.astype(np.float32) * (1 / 255) * (self._shape.dist[win] > 1.5)
        albedo = st.albedo[win]
        albedo += (_CRACK_INSIDE - albedo) * (dark * c)[..., None]
        st.bumps[win] -= (1.0 + 3.0 * sev) * k * cv2.GaussianBlur(c, (0, 0), 0.8 * k)
        return win

    def _walk(self, p: np.ndarray, heading: float, length: float) -> np.ndarray:
        """A jagged path: short steps zig-zagging about a slowly drifting heading. (n, 2) float px."""
        pts = [p]
        travelled = 0.0
        while travelled < length:
            heading += float(self.rng.normal(0, 0.08))
            step = float(self.rng.uniform(2, 6)) * self.k
            a = heading + float(self.rng.normal(0, 0.4))
            pts.append(pts[-1] + step * np.array([math.cos(a), math.sin(a)]))
            travelled += step
        return np.array(pts)

    def _apply_burnt(self) -> Win | None:
        rng, k, st = self.rng, self.k, self.state
        r = (8 + 40 * float(rng.random())) * k
        if rng.random() < 0.5:  # at the rim, where the heat comes from
            a = float(rng.uniform(0, 2 * math.pi))
            p = self._polar(a, self._rho_at(a) - float(rng.uniform(0, 0.5)) * r)
            if not self._clear(p, 1.3 * r):
                return None
        else:
            p = self._inside(r / 2, 1.3 * r)
        if p is None:
            return None
        blob = self._cake_blob(p, r, int(rng.integers(2, 5)), 0.3 * r + k)
        if blob is None:
            return None
        w, win = blob
        strength = 0.35 + 0.6 * float(rng.random())
        albedo = st.albedo[win]
        albedo += (_BURNT - albedo) * (strength * w)[..., None]
        return win

    def _apply_misshapen(self) -> Win | None:
        rng, k, st = self.rng, self.k, self.state
        sev = float(rng.random())
        t0 = float(rng.uniform(0, 2 * math.pi))
        kind = float(rng.random())
        if 0.45 <= kind < 0.8 and self.scene.mould >= N_MOULDS - SQUARE_MOULDS:
            # A square cake's side is straight already: a flattened square cake has a corner cut off.
            t0 = math.pi / 4 + math.pi / 2 * int(rng.integers(0, 4)) + float(rng.normal(0, 0.08))
        d = (THETA - t0 + math.pi) % (2 * math.pi) - math.pi
        w = float(rng.uniform(0.12, 0.35) if kind < 0.45 else rng.uniform(0.08, 0.22))
        depth = (3 + 20 * sev) * k if kind < 0.8 else (3 + 14 * sev) * k
        rim = self._rho_at(t0)
        # How far the change reaches along the edge (a chord's half length), plus the shadow's reach.
        spread = rim * w if kind < 0.45 or kind >= 0.8 else math.sqrt(2 * rim * depth)
        if not self._clear(self._polar(t0, rim), spread + 4 * depth + 20 * k):
            return None
        if kind < 0.45:  # dent: pushed in over an arc
            bump = np.where(np.abs(d) < w, np.cos(np.pi / 2 * d / w) ** 2, 0.0)
            st.rho = st.rho - depth * bump
        elif kind < 0.8:  # flattened: cut along a chord, its ends rounded off
            i0 = round(t0 / (2 * math.pi) * OUTLINE_SAMPLES) % OUTLINE_SAMPLES
            r0 = st.rho[i0] - depth
            near = np.abs(d) < math.pi / 2 - 0.05
            chord = np.where(near, r0 / np.cos(np.where(near, d, 0.0)), np.inf)
            cut = np.minimum(st.rho, chord)
            soft = np.ones(9) / 9  # a 4-degree moving average rounds the corners the cut leaves
            smooth = np.convolve(np.concatenate([cut[-4:], cut, cut[:4]]), soft, mode="valid")
            # Only around the cut: elsewhere the average would nudge the natural outline's crests.
            moved = (cut < st.rho).astype(float)
            near_cut = np.convolve(np.concatenate([moved[-5:], moved, moved[:5]]), np.ones(11), mode="valid") > 0
            st.rho = np.where(near_cut, np.minimum(st.rho, smooth), st.rho)
        else:  # bulge: a lump of dough that flowed out
            bump = np.where(np.abs(d) < w, np.cos(np.pi / 2 * d / w) ** 2, 0.0)
            st.rho = st.rho + depth * bump
        return self.full

    def _apply_blurred_imprint(self) -> Win | None:
        rng, k, st = self.rng, self.k, self.state
        ys, xs = np.nonzero((st.pattern > 0.5) & (self._shape.dist > 12 * k))
        if len(ys) == 0:
            return None
        r = (14 + 40 * float(rng.random())) * k
        for _ in range(16):
            i = int(rng.integers(0, len(ys)))
            p = np.array([xs[i], ys[i]], np.float64)
            if self._clear(p, 1.3 * r):
                break
        else:
            return None
        blob = self._blob(p, r, int(rng.integers(1, 3)), 0.3 * r)
        if blob is None:
            return None
        w, win = blob
        pattern = st.pattern[win]
        if rng.random() < 0.5:  # pressed flat: the pattern is (mostly) missing
            target = pattern * float(rng.uniform(0.0, 0.4))
        else:  # smeared: dragged along a direction
            length = max(3, round(float(rng.uniform(7, 21)) * k)) | 1
            kernel = np.zeros((length, length), np.float32)
            kernel[length // 2, :] = 1.0 / length
            rot = cv2.getRotationMatrix2D((length / 2 - 0.5, length / 2 - 0.5), float(rng.uniform(0, 180)), 1.0)
            kernel = cv2.warpAffine(kernel, rot, (length, length))
            kernel /= max(float(kernel.sum()), 1e-6)
            # Smear the pattern around the window too, so the window's edge does not show in the smear.
            ext = self._window(
                np.array([win[1].start - length, win[0].start - length], float),
                np.array([win[1].stop + length, win[0].stop + length], float),
            )
            assert ext is not None
            smeared = cv2.GaussianBlur(cv2.filter2D(st.pattern[ext], -1, kernel), (0, 0), 1.5 * k)
            dy, dx = win[0].start - ext[0].start, win[1].start - ext[1].start
            target = smeared[dy : dy + pattern.shape[0], dx : dx + pattern.shape[1]]
        pattern += (target - pattern) * w
        return win

    def _apply_foreign_speck(self) -> Win | None:
        rng, k, st = self.rng, self.k, self.state
        r = (1.8 + 3.7 * float(rng.random())) * k
        p = self._inside(4 * k, 1.25 * r + 2)
        if p is None:
            return None
        n = int(rng.integers(5, 9))
        angles = np.sort(rng.uniform(0, 2 * math.pi, n))
        radii = r * rng.uniform(0.6, 1.25, n)
        opacity = 0.65 + 0.35 * float(rng.random())
        weights = np.array([w for w, _ in _SPECK_COLOURS])
        colour = np.array(_SPECK_COLOURS[int(rng.choice(len(weights), p=weights))][1], np.float32)
        colour = colour + rng.uniform(-10, 10, 3).astype(np.float32)
        reach = 1.25 * r + 4 * k + 2
        win = self._window(p - reach, p + reach)
        if win is None:
            return None
        offset = np.array([win[1].start, win[0].start])
        poly = p - offset + np.stack([radii * np.cos(angles), radii * np.sin(angles)], 1)
        m = np.zeros((win[0].stop - win[0].start, win[1].stop - win[1].start), np.uint8)
        cv2.fillPoly(m, [np.round(poly * 16).astype(np.int32)], 255, cv2.LINE_AA, 4)
        a = m.astype(np.float32) * (opacity / 255)
        if st.overlay_a is None or st.overlay_c is None:
            st.overlay_a = np.zeros((self.size, self.size), np.float32)
            st.overlay_c = np.zeros((self.size, self.size, 3), np.float32)
        st.overlay_c[win][a > 0] = colour
        np.maximum(st.overlay_a[win], a, out=st.overlay_a[win])
        st.bumps[win] += 1.2 * k * cv2.GaussianBlur(a, (0, 0), 0.8 * k)
        return win

    def _apply_underbaked(self) -> Win | None:
        rng, k, st = self.rng, self.k, self.state
        if rng.random() < 0.35 and not self.boxes:  # the whole cake came out pale (then it is the only defect)
            win = self._shape.roi
            w = self._shape.alpha_full[win]
            strength = 0.4 + 0.35 * float(rng.random())
        else:
            r = (20 + 45 * float(rng.random())) * k
            p = self._inside(r / 2, 1.4 * r)
            blob = None if p is None else self._cake_blob(p, r, int(rng.integers(1, 4)), 0.4 * r)
            if blob is None:
                return None
            w, win = blob
            strength = 0.35 + 0.5 * float(rng.random())
        albedo = st.albedo[win]
        pale = _PALE * (albedo / self.scene.base)  # keep the mottling
        albedo += (pale - albedo) * (strength * w)[..., None]
        return win

    # -- drawing and checking
    def paint(self, cls: int, tries: int = 8) -> tuple[int, int, int, int] | None:
        """Apply one defect of `cls`; return its tight half-open box (x0, y0, x1, y1), or None if none fitted."""
        apply = (
            self._apply_crack,
            self._apply_burnt,
            self._apply_misshapen,
            self._apply_blurred_imprint,
            self._apply_foreign_speck,
            self._apply_underbaked,
        )[cls]
        for _ in range(tries):
            saved = self.state.copy()
            win = apply()
            if win is None:
                self._restore(saved)
                continue
            if win is self.full:
                image = render(self.scene, self.state)
            else:
                image = render(self.scene, self.state, self.image, win)
            box = self._accept(image, win)
            if box is None:
                self._restore(saved)
                continue
            self.image = image
            return box
        return None

    def _restore(self, saved: State) -> None:
        st = self.state
        st.rho, st.pattern, st.bumps, st.albedo = saved.rho, saved.pattern, saved.bumps, saved.albedo
        st.overlay_a, st.overlay_c, st.shape = saved.overlay_a, saved.overlay_c, saved.shape

    def _accept(self, image: np.ndarray, win: Win) -> tuple[int, int, int, int] | None:
        step = _changed(image[win], self.image[win])
        rows, cols = np.nonzero(step)
        if len(rows) < _MIN_CHANGED_PX * self.k * self.k:
            return None  # too small or too faint to see
        y0, x0 = win[0].start, win[1].start
        box = (x0 + int(cols.min()), y0 + int(rows.min()), x0 + int(cols.max()) + 1, y0 + int(rows.max()) + 1)
        if box[0] < 2 or box[1] < 2 or box[2] > self.size - 2 or box[3] > self.size - 2:
            return None  # a defect cut by the image's edge has an ambiguous box
        gap = round(4 * self.k)  # keep defects apart so every box holds only its own defect's pixels
        for b in self.boxes:
            if box[0] < b[2] + gap and b[0] < box[2] + gap and box[1] < b[3] + gap and b[1] < box[3] + gap:
                return None
        covered = self.covered.copy()
        covered[box[1] : box[3], box[0] : box[2]] = True
        if np.any(_changed(image[win], self.template[win]) & ~covered[win]):
            return None  # e.g. two faint tails adding up outside both boxes
        self.covered = covered
        self.boxes.append(box)
        return box


def _changed(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(H, W) bool: pixels where some channel of `a` and `b` differs by more than `DIFF_THRESHOLD`."""
    d = cv2.absdiff(a, b)
    return np.maximum(np.maximum(d[..., 0], d[..., 1]), d[..., 2]) > DIFF_THRESHOLD
