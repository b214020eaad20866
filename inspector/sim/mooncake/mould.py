"""The moulds: the 16 embossed top patterns (12 round, 4 square) as strokes, and each drawn once as an image.

A mould is a scalloped rim (with a second line, a leaf in every lobe or a ring of dots), an inner ring, and a centre
of character-like strokes, a flower or a sun. Moulds are the same on every line and seed (their own fixed seed).
"""

from __future__ import annotations

import functools
import math

import cv2
import numpy as np

__all__ = ["N_MOULDS", "SQUARE_MOULDS", "ellipse", "mould_design", "mould_image", "mould_radius", "outline_unit"]

N_MOULDS, SQUARE_MOULDS = 16, 4  # the last `SQUARE_MOULDS` moulds are square

# A mould is a list of strokes in unit coordinates (the cake's nominal radius is 1, x right, y down):
# ("line", points (k, 2), closed, thickness) | ("fill", points (k, 2), False, 0): raised lines and raised areas.
_Stroke = tuple[str, np.ndarray, bool, float]


def outline_unit(theta: np.ndarray, exponent: float) -> np.ndarray:
    """Radius of the nominal outline at `theta`: 1 for a circle (exponent 2), a superellipse for a square."""
    if exponent == 2.0:
        return np.ones_like(theta)
    c, s = np.abs(np.cos(theta)), np.abs(np.sin(theta))
    return 0.9 * (c**exponent + s**exponent) ** (-1.0 / exponent)


def _circle(r: float, n: int = 96, centre: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    t = np.linspace(0, 2 * math.pi, n, endpoint=False)
    return np.stack([centre[0] + r * np.cos(t), centre[1] + r * np.sin(t)], 1)


def ellipse(centre: np.ndarray, axes: tuple[float, float], angle: float, n: int = 32) -> np.ndarray:
    t = np.linspace(0, 2 * math.pi, n, endpoint=False)
    x, y = axes[0] * np.cos(t), axes[1] * np.sin(t)
    c, s = math.cos(angle), math.sin(angle)
    return np.stack([centre[0] + c * x - s * y, centre[1] + s * x + c * y], 1)


def _bezier(p0: np.ndarray, p1: np.ndarray, p2: np.ndarray, n: int = 10) -> np.ndarray:
    t = np.linspace(0, 1, n)[:, None]
    return (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t**2 * p2


def _glyph(rng: np.random.Generator) -> list[np.ndarray]:
    """A character-like glyph in [-1, 1]^2: horizontal and vertical strokes, maybe a box, sweeps and dots."""
    nodes = np.linspace(-0.9, 0.9, 5)
    strokes: list[np.ndarray] = []
    rows = rng.choice(5, size=int(rng.integers(1, 4)), replace=False)
    for r in rows:
        a = int(rng.integers(0, 2))
        b = int(rng.integers(3, 5))
        strokes.append(np.array([[nodes[a], nodes[r]], [nodes[b], nodes[r]]]))
    cols = rng.choice(5, size=int(rng.integers(1, 3)), replace=False)
    for c in cols:
        a = int(rng.integers(0, 2))
        b = int(rng.integers(3, 5))
        strokes.append(np.array([[nodes[c], nodes[a]], [nodes[c], nodes[b]]]))
    if rng.random() < 0.45:  # a box radical
        x0, y0 = int(rng.integers(0, 3)), int(rng.integers(0, 3))
        x1, y1 = int(rng.integers(x0 + 2, 5)), int(rng.integers(y0 + 2, 5))
        strokes.append(np.array([[nodes[x0], nodes[y0]], [nodes[x1], nodes[y0]], [nodes[x1], nodes[y1]]]))
        strokes.append(np.array([[nodes[x0], nodes[y0]], [nodes[x0], nodes[y1]], [nodes[x1], nodes[y1]]]))
    if rng.random() < 0.6:  # a left-falling sweep
        x = nodes[int(rng.integers(1, 4))]
        strokes.append(_bezier(np.array([x, -0.85]), np.array([x, 0.2]), np.array([x - 0.8, 0.85])))
    if rng.random() < 0.5:  # a right-falling sweep
        strokes.append(_bezier(np.array([-0.1, 0.0]), np.array([0.3, 0.5]), np.array([0.9, 0.8])))
    for _ in range(int(rng.integers(0, 3))):  # dots
        p = rng.uniform(-0.75, 0.75, 2)
        strokes.append(np.array([p, p + np.array([0.12, 0.14])]))
    return strokes


@functools.lru_cache(maxsize=N_MOULDS)
def mould_design(mould: int) -> tuple[float, tuple[_Stroke, ...]]:
    """The outline exponent (2: round) and the strokes of mould `mould` (the same on every line and seed)."""
    rng = np.random.default_rng([0x6D6F6F6E, mould])
    square = mould >= N_MOULDS - SQUARE_MOULDS
    exponent = float(rng.uniform(6.0, 10.0)) if square else 2.0
    thin = float(rng.uniform(0.018, 0.026))
    strokes: list[_Stroke] = []
    # Scalloped rim: lobes bulge outwards with pointed cusps between them.
    lobes = int(rng.choice([12, 16, 20] if square else [8, 10, 12, 14, 16]))
    s1, amp = float(rng.uniform(0.8, 0.85)), float(rng.uniform(0.04, 0.07))
    t = np.linspace(0, 2 * math.pi, 720, endpoint=False)
    base = outline_unit(t, exponent)
    r_rim = s1 * base * (1 - amp + amp * np.abs(np.sin(lobes * t / 2)))
    strokes.append(("line", np.stack([r_rim * np.cos(t), r_rim * np.sin(t)], 1), True, thin))
    inner_kind = int(rng.integers(0, 3))
    if inner_kind == 0:  # a second scalloped line inside the first
        r2 = (s1 - 0.06) * base * (1 - amp + amp * np.abs(np.sin(lobes * t / 2)))
        strokes.append(("line", np.stack([r2 * np.cos(t), r2 * np.sin(t)], 1), True, thin * 0.8))
    elif inner_kind == 1:  # a leaf in every lobe
        for k in range(lobes):
            a = (2 * k + 1) * math.pi / lobes
            rr = (s1 - amp - 0.04) * float(outline_unit(np.array([a]), exponent)[0])
            strokes.append(
                ("line", ellipse(np.array([rr * math.cos(a), rr * math.sin(a)]), (0.05, 0.022), a), True, thin)
            )
    s2 = float(rng.uniform(0.55, 0.62))
    if inner_kind == 2 or rng.random() < 0.4:  # a ring of dots between rim and inner ring
        n_dots = int(rng.integers(24, 40))
        rd = (s1 - amp + s2) / 2
        for k in range(n_dots):
            a = 2 * math.pi * k / n_dots
            rr = rd * float(outline_unit(np.array([a]), exponent)[0])
            strokes.append(("fill", _circle(0.016, 12, (rr * math.cos(a), rr * math.sin(a))), False, 0.0))
    ring = s2 * outline_unit(t, exponent)
    strokes.append(("line", np.stack([ring * np.cos(t), ring * np.sin(t)], 1), True, thin * 1.2))
    if rng.random() < 0.4:
        ring = (s2 - 0.04) * outline_unit(t, exponent)
        strokes.append(("line", np.stack([ring * np.cos(t), ring * np.sin(t)], 1), True, thin * 0.7))
    # Centre motif.
    motif = int(rng.choice(3, p=[0.55, 0.25, 0.2]))
    if motif == 0:  # characters: 1, 2 or 4 glyphs
        count = int(rng.choice([1, 2, 4]))
        half, centres = {
            1: (0.3, [(0, 0)]),
            2: (0.2, [(-0.22, 0), (0.22, 0)]),
            4: (0.16, [(-0.19, -0.19), (0.19, -0.19), (-0.19, 0.19), (0.19, 0.19)]),
        }[count]
        for cx, cy in centres:
            for stroke in _glyph(rng):
                strokes.append(("line", stroke * half + np.array([cx, cy]), False, thin * 1.25))
    elif motif == 1:  # flower
        petals = int(rng.integers(5, 10))
        strokes.append(("fill", _circle(0.07, 32), False, 0.0))
        for k in range(petals):
            a = 2 * math.pi * k / petals
            strokes.append(
                ("line", ellipse(np.array([0.22 * math.cos(a), 0.22 * math.sin(a)]), (0.13, 0.06), a), True, thin)
            )
        for k in range(petals):
            a = 2 * math.pi * (k + 0.5) / petals
            strokes.append(("fill", _circle(0.02, 12, (0.4 * math.cos(a), 0.4 * math.sin(a))), False, 0.0))
    else:  # sun
        strokes.append(("line", _circle(0.14), True, thin * 1.2))
        strokes.append(("line", _circle(0.28), True, thin))
        rays = int(rng.integers(12, 22))
        for k in range(rays):
            a = 2 * math.pi * k / rays
            d = np.array([math.cos(a), math.sin(a)])
            strokes.append(("line", np.stack([0.32 * d, 0.45 * d]), False, thin))
        strokes.append(("fill", _circle(0.05, 24), False, 0.0))
    return exponent, tuple(strokes)


def mould_radius(size: int) -> int:
    """The radius px a mould is drawn at for images of `size` (the largest cake's: parts only shrink it)."""
    return round(0.35 * size)


@functools.lru_cache(maxsize=64)
def mould_image(mould: int, r0: int) -> np.ndarray:
    """Mould `mould`'s pattern drawn at radius `r0` px, centred in a square uint8 image (255 on raised strokes)."""
    _, strokes = mould_design(mould)
    side = 2 * math.ceil(1.08 * r0) + 8
    canvas = np.zeros((side, side), np.uint8)
    centre = np.array([side / 2 - 0.5, side / 2 - 0.5])
    for kind, q, closed, thick in strokes:
        pts = np.round((centre + r0 * q) * 16).astype(np.int32)
        if kind == "line":
            cv2.polylines(canvas, [pts], closed, 255, max(1, round(thick * r0)), cv2.LINE_AA, 4)
        else:
            cv2.fillPoly(canvas, [pts], 255, cv2.LINE_AA, 4)
    canvas.setflags(write=False)
    return canvas
