"""Synthetic mooncake line: baked pastries with an embossed top, on a belt or tray, with known defects.

A second product beside the PCB line (`inspector.sim`), with the same public shapes: a deterministic line of parts
(`MooncakeLine.make_part`), a frame source (`MooncakeSource`), and writers for a YOLO dataset and a folder.

Each part is a top view (default 384x384 px, about 2.5 px per mm) of one mooncake: round, or (15 % of parts) a
rounded square, golden-brown with natural variation in tone, mottling, size, position, rotation and pattern depth.
The top is pressed from one of 16 moulds (12 round, 4 square): a scalloped rim, leaves or a ring of dots, an
inner ring, and a centre of character-like strokes, a flower or a sun. The pattern is a height map shaded as relief
under a directional light (with an egg-wash gloss); the cake casts a soft shadow on a dark conveyor belt, baking
paper or a perforated tray (drawn per part, so a model sees all three). Lighting drifts from part to part
(direction, brightness, colour temperature, a soft gradient) and every image carries camera noise.

A part is defect-free with probability `1 - defect_rate`; otherwise it carries 1..`max_defects` defects of six
classes (drawn uniformly), each with its size and contrast drawn uniformly from small and faint to large and
dark, so that some are borderline (measured on 150 parts: specks of under 30 changed pixels, pale patches and
smeared patterns whose pixels differ from the template by only 20-odd grey levels):

| id | class | drawn as |
| -- | --- | --- |
| 0 | crack | a thin jagged dark groove across the top, sometimes branching |
| 1 | burnt | a dark brown to black patch with a soft edge, often at the rim |
| 2 | misshapen | the outline dented, flattened (a cut chord) or bulging (a lump of overflowing dough) |
| 3 | blurred_imprint | the pattern missing (pressed flat) or smeared in a region |
| 4 | foreign_speck | a small dark, blue, red, green or grey particle on the top |
| 5 | underbaked | a pale patch, or the whole cake pale |

Boxes: `MooncakePart.boxes` are tight around the pixels each defect changed, where image and template (the same
part, same light and the same camera noise, without defects) differ by more than `DIFF_THRESHOLD` grey levels in
some channel; a defect whose change is too small to pass that threshold on enough pixels is not kept. Labels
(`label_boxes`, the YOLO files) add `LABEL_MARGIN` px a side so the smallest specks keep a box a detector can draw.

Everything is deterministic by (seed, part index), whatever order parts are made in; the cake (stream 0) and the
camera noise (stream 2) do not depend on whether the part is defective (stream 1), so the same part is the same
cake at defect rate 0 and 1. The renderer uses OpenCV's float filters, so a different OpenCV build may move a few
pixels by one grey level. `python -m inspector.mooncake --help` writes datasets, folders and contact sheets.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np

from inspector.dataset import write_data_yaml
from inspector.sim import PartTruth, SyntheticPart
from inspector.types import SourceError

__all__ = [
    "BASE_SIZE",
    "DIFF_THRESHOLD",
    "LABEL_MARGIN",
    "MOONCAKE_NAMES",
    "MooncakeLine",
    "MooncakePart",
    "MooncakeSource",
    "contact_sheet",
    "main",
    "write_dataset",
    "write_folder",
]

MOONCAKE_NAMES = {0: "crack", 1: "burnt", 2: "misshapen", 3: "blurred_imprint", 4: "foreign_speck", 5: "underbaked"}
CRACK, BURNT, MISSHAPEN, BLURRED_IMPRINT, FOREIGN_SPECK, UNDERBAKED = range(6)
_NUM_CLASSES = len(MOONCAKE_NAMES)

BASE_SIZE = 384  # the image size the feature sizes below are given for; other sizes scale them
DIFF_THRESHOLD = 10  # grey levels: a pixel is changed when a channel differs from the template by more than this
LABEL_MARGIN = 3  # px added on each side of a tight box in labels
_MIN_CHANGED_PX = 12  # a defect must change at least this many pixels (at BASE_SIZE) to count as visible
_N_MOULDS, _SQUARE_MOULDS = 16, 4  # the last `_SQUARE_MOULDS` moulds are square
_K = 720  # outline samples (every half degree)

# BGR colours (0..255)
_GOLDEN_LIGHT = np.array([72, 152, 214], np.float32)
_GOLDEN_DARK = np.array([34, 92, 162], np.float32)
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


# --------------------------------------------------------------------------------------------------- results
@dataclass(frozen=True, slots=True)
class MooncakePart(SyntheticPart):
    """One generated mooncake: `SyntheticPart`'s fields, with mooncake class names and label margin.

    image: (H, W, 3) uint8 BGR, the camera's view. template: the same part without defects (same light, same noise).
    boxes: (n, 4) float32 xyxy px, tight (half-open) around the pixels each defect changed beyond `DIFF_THRESHOLD`.
    class_ids: (n,) int64 in 0..5 (`MOONCAKE_NAMES`).
    """

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(MOONCAKE_NAMES[int(c)] for c in self.class_ids)

    def label_boxes(self, margin: float = LABEL_MARGIN) -> np.ndarray:
        """(n, 4) float32: `boxes` grown by `margin` px a side and clipped to the image."""
        return SyntheticPart.label_boxes(self, margin)

    def yolo_label(self, margin: float = LABEL_MARGIN) -> str:
        """Ultralytics label text: one `class cx cy w h` line per defect, normalised to [0, 1]."""
        return SyntheticPart.yolo_label(self, margin)


# ------------------------------------------------------------------------------------------------------ moulds
# A mould is a list of strokes in unit coordinates (the cake's nominal radius is 1, x right, y down):
# ("line", points (k, 2), closed, thickness) | ("fill", points (k, 2), False, 0): raised lines and raised areas.
_Stroke = tuple[str, np.ndarray, bool, float]


def _outline_unit(theta: np.ndarray, exponent: float) -> np.ndarray:
    """Radius of the nominal outline at `theta`: 1 for a circle (exponent 2), a superellipse for a square."""
    if exponent == 2.0:
        return np.ones_like(theta)
    c, s = np.abs(np.cos(theta)), np.abs(np.sin(theta))
    return 0.9 * (c**exponent + s**exponent) ** (-1.0 / exponent)


def _circle(r: float, n: int = 96, centre: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    t = np.linspace(0, 2 * math.pi, n, endpoint=False)
    return np.stack([centre[0] + r * np.cos(t), centre[1] + r * np.sin(t)], 1)


def _ellipse(centre: np.ndarray, axes: tuple[float, float], angle: float, n: int = 32) -> np.ndarray:
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


@functools.lru_cache(maxsize=_N_MOULDS)
def _mould(mould: int) -> tuple[float, tuple[_Stroke, ...]]:
    """The outline exponent (2: round) and the strokes of mould `mould` (the same on every line and seed)."""
    rng = np.random.default_rng([0x6D6F6F6E, mould])
    square = mould >= _N_MOULDS - _SQUARE_MOULDS
    exponent = float(rng.uniform(6.0, 10.0)) if square else 2.0
    thin = float(rng.uniform(0.018, 0.026))
    strokes: list[_Stroke] = []
    # Scalloped rim: lobes bulge outwards with pointed cusps between them.
    lobes = int(rng.choice([12, 16, 20] if square else [8, 10, 12, 14, 16]))
    s1, amp = float(rng.uniform(0.8, 0.85)), float(rng.uniform(0.04, 0.07))
    t = np.linspace(0, 2 * math.pi, 720, endpoint=False)
    base = _outline_unit(t, exponent)
    r_rim = s1 * base * (1 - amp + amp * np.abs(np.sin(lobes * t / 2)))
    strokes.append(("line", np.stack([r_rim * np.cos(t), r_rim * np.sin(t)], 1), True, thin))
    inner_kind = int(rng.integers(0, 3))
    if inner_kind == 0:  # a second scalloped line inside the first
        r2 = (s1 - 0.06) * base * (1 - amp + amp * np.abs(np.sin(lobes * t / 2)))
        strokes.append(("line", np.stack([r2 * np.cos(t), r2 * np.sin(t)], 1), True, thin * 0.8))
    elif inner_kind == 1:  # a leaf in every lobe
        for k in range(lobes):
            a = (2 * k + 1) * math.pi / lobes
            rr = (s1 - amp - 0.04) * float(_outline_unit(np.array([a]), exponent)[0])
            strokes.append(
                ("line", _ellipse(np.array([rr * math.cos(a), rr * math.sin(a)]), (0.05, 0.022), a), True, thin)
            )
    s2 = float(rng.uniform(0.55, 0.62))
    if inner_kind == 2 or rng.random() < 0.4:  # a ring of dots between rim and inner ring
        n_dots = int(rng.integers(24, 40))
        rd = (s1 - amp + s2) / 2
        for k in range(n_dots):
            a = 2 * math.pi * k / n_dots
            rr = rd * float(_outline_unit(np.array([a]), exponent)[0])
            strokes.append(("fill", _circle(0.016, 12, (rr * math.cos(a), rr * math.sin(a))), False, 0.0))
    ring = s2 * _outline_unit(t, exponent)
    strokes.append(("line", np.stack([ring * np.cos(t), ring * np.sin(t)], 1), True, thin * 1.2))
    if rng.random() < 0.4:
        ring = (s2 - 0.04) * _outline_unit(t, exponent)
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
                ("line", _ellipse(np.array([0.22 * math.cos(a), 0.22 * math.sin(a)]), (0.13, 0.06), a), True, thin)
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


# ------------------------------------------------------------------------------------------------------- scene
@dataclass(slots=True)
class _Scene:
    """Everything about a part that defects do not change: the cake's placement and look, background, light, noise."""

    size: int
    k: float  # size / BASE_SIZE: feature sizes in px scale with it
    centre: np.ndarray  # (2,) float px
    radius: float  # nominal radius px (a square cake's half side is 0.9 of it)
    rotation: float  # radians, clockwise on screen (y down)
    mould: int
    base: np.ndarray  # (3,) BGR albedo before mottling
    depth: float  # pattern relief height
    bevel_w: float  # px over which the edge rounds off
    body_h: float
    brown_k: float  # how much darker the raised pattern is baked
    edge_k: float  # how much darker the rounded edge is
    light: np.ndarray  # (3,) unit vector to the light (x, y, z), z up out of the image
    half: np.ndarray  # (3,) unit half vector between light and camera
    gloss: float
    shadow_shift: np.ndarray  # (2,) px
    shadow_strength: float
    texture: np.ndarray  # (S, S) float32 fine surface height
    background: np.ndarray  # (S, S, 3) float32, lit
    gradient: np.ndarray  # (S, S, 1) float32 soft light gradient
    tint: np.ndarray  # (3,) float32 global gain per channel (brightness and colour temperature)
    noise: np.ndarray  # (S, S, 3) float32 camera noise in grey levels


@dataclass(frozen=True, slots=True)
class _Shape:
    """Layers that depend only on the outline (`rho`), kept while it stays the same object."""

    rho: np.ndarray
    roi: tuple[slice, slice]  # the cake's bounding box (plus a margin): the only pixels a render recomputes
    alpha_full: np.ndarray  # (S, S) float32 anti-aliased coverage
    dist: np.ndarray  # (S, S) float32 distance in px from the edge, inside
    alpha: np.ndarray  # (h, w, 1) coverage in the roi
    bevel: np.ndarray  # (h, w) 0 at the edge .. 1 past the rounded edge
    body: np.ndarray  # (h, w) height of the cake's body
    edge: np.ndarray  # (h, w) tone factor darkening the rounded edge
    bg_lit: np.ndarray  # (h, w, 3) shadowed, lit background in the roi (no noise)
    backdrop: np.ndarray  # (S, S, 3) uint8 the frame as it is outside the roi


@dataclass(slots=True)
class _State:
    """What defects change: the outline, the pressed pattern, grooves and bumps, colours, particles on top."""

    rho: np.ndarray  # (_K,) outline radius px at cake-frame angles 2*pi*i/_K
    pattern: np.ndarray  # (S, S) float32 in [0, 1], relief of the mould's pattern
    bumps: np.ndarray  # (S, S) float32 height offsets (cracks negative, particles positive)
    albedo: np.ndarray  # (S, S, 3) float32 BGR
    overlay_a: np.ndarray | None = None  # (S, S) float32 opacity of particles (None: none)
    overlay_c: np.ndarray | None = None  # (S, S, 3) float32 their colour
    shape: _Shape | None = None  # cache for the current `rho`

    def copy(self) -> _State:
        return _State(
            self.rho,  # never changed in place: a misshapen defect assigns a new array
            self.pattern.copy(),
            self.bumps.copy(),
            self.albedo.copy(),
            None if self.overlay_a is None else self.overlay_a.copy(),
            None if self.overlay_c is None else self.overlay_c.copy(),
            self.shape,
        )


_THETA = np.linspace(0, 2 * math.pi, _K, endpoint=False)
_AMBIENT = 0.45
_TEXTURE = 0.25  # height std of the pastry's fine surface texture, px at BASE_SIZE
_SPEC_COLOUR = np.array([205, 232, 250], np.float32)


def _gauss_unit(white: np.ndarray, sigma: float) -> np.ndarray:
    """White noise blurred by `sigma` px and scaled back to a standard deviation of about 1."""
    return cv2.GaussianBlur(white, (0, 0), sigma) * (2 * math.sqrt(math.pi) * sigma)


def _streaks_unit(white: np.ndarray, length: int) -> np.ndarray:
    """White noise smeared along x over `length` px (streaks), standard deviation 1."""
    return cv2.blur(white, (length, 1)) * math.sqrt(length)


def _low_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Smooth noise (size, size) float32 with std about 1 and features about size / cells px wide."""
    small = rng.standard_normal((cells, cells)).astype(np.float32)
    return cv2.resize(small * (1 / max(float(small.std()), 1e-6)), (size, size), interpolation=cv2.INTER_CUBIC)


def _rolled(field: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """`field` shifted cyclically by a random offset: white noise that is independent of `field` pixel by pixel."""
    h, w = field.shape[:2]
    return np.roll(field, (int(rng.integers(h // 4, 3 * h // 4)), int(rng.integers(w // 4, 3 * w // 4))), (0, 1))


def _background(rng: np.random.Generator, white: np.ndarray, k: float) -> np.ndarray:
    """A dark conveyor belt (50 %), baking paper (30 %) or a perforated metal tray (20 %): (S, S, 3) float32.

    white: (S, S) float32 white noise to texture it with.
    """
    size = white.shape[0]
    kind = rng.random()
    jitter = rng.uniform(-6, 6, 3).astype(np.float32)
    if kind < 0.5:  # belt: dark rubber with streaks along the running direction and a faint weave
        base = np.array([48, 50, 46], np.float32) + jitter
        tex = 5.0 * _streaks_unit(white, max(3, round(15 * k))) + 3.0 * _low_noise(rng, size, 8)
        period = float(rng.uniform(5, 8)) * k
        t = np.arange(size, dtype=np.float32)
        tex += np.outer(2.0 * np.sin(t * (2 * math.pi / period)), np.sin(t * (2 * math.pi / (3 * period))))
        return base + tex[..., None]
    if kind < 0.8:  # baking paper: warm white, crinkled (shaded low-frequency height), fibres
        base = np.array([198, 214, 226], np.float32) + jitter
        crinkle = _low_noise(rng, size, int(rng.integers(14, 28)))
        slope = cv2.Sobel(crinkle, cv2.CV_32F, 1, 0, ksize=3) + cv2.Sobel(crinkle, cv2.CV_32F, 0, 1, ksize=3)
        slope *= 0.06 / max(float(np.abs(slope).max()), 1e-6)
        shade = 1.0 + 0.03 * _low_noise(rng, size, 6) - slope
        fibres = 2.5 * _gauss_unit(white, 0.8)
        return base * shade[..., None] + fibres[..., None]
    # perforated tray: brushed grey metal with a grid of dark holes
    base = np.array([104, 108, 110], np.float32) + jitter
    brushed = 4.0 * _streaks_unit(white, max(3, round(21 * k))) + 3.0 * _low_noise(rng, size, 5)
    pitch = float(rng.uniform(15, 21)) * k
    hole = max(1.5, float(rng.uniform(2.5, 3.8)) * k)
    ox, oy = rng.uniform(0, pitch, 2)
    holes = np.zeros((size, size), np.uint8)
    for y in np.arange(oy - pitch, size + pitch, pitch):
        for x in np.arange(ox - pitch, size + pitch, pitch):
            cv2.circle(holes, (round(x * 16), round(y * 16)), round(hole * 16), 255, -1, cv2.LINE_AA, 4)
    return (base + brushed[..., None]) * (1 - 0.7 / 255 * holes.astype(np.float32))[..., None]


def _light_field(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Lighting drift: a soft linear gradient (S, S, 1), and a global gain with a colour temperature (3,)."""
    gain = float(rng.uniform(0.86, 1.12))
    temp = float(rng.uniform(-0.07, 0.07))
    amp = float(rng.uniform(0.0, 0.24))
    a = float(rng.uniform(0, 2 * math.pi))
    t = np.arange(size, dtype=np.float32) - size / 2
    grad = 1.0 + (amp / size) * (np.cos(a) * t[None, :] + np.sin(a) * t[:, None])
    return grad[..., None].astype(np.float32), np.array([1 - temp, 1.0, 1 + temp], np.float32) * gain


def _scene(rng: np.random.Generator, noise_rng: np.random.Generator, size: int) -> _Scene:
    k = size / BASE_SIZE
    square = rng.random() < 0.15
    n_round = _N_MOULDS - _SQUARE_MOULDS
    mould = int(rng.integers(n_round, _N_MOULDS)) if square else int(rng.integers(0, n_round))
    radius = float(rng.uniform(0.29, 0.35)) * size
    centre = size / 2 + rng.uniform(-0.05, 0.05, 2) * size
    rotation = float(rng.uniform(-0.14, 0.14) if square else rng.uniform(-0.3, 0.3))
    browning = float(rng.uniform(0.2, 1.0))
    base = (_GOLDEN_LIGHT + (_GOLDEN_DARK - _GOLDEN_LIGHT) * browning + rng.uniform(-4, 4, 3)).astype(np.float32)
    az = math.radians(225 + float(rng.uniform(-30, 30)))  # from the upper left, as a line light usually hangs
    el = math.radians(float(rng.uniform(40, 60)))
    light = np.array([math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el)], np.float32)
    half = light + np.array([0, 0, 1], np.float32)
    half /= np.linalg.norm(half)
    shadow_len = float(rng.uniform(4, 9)) * k
    white = rng.standard_normal((size, size), dtype=np.float32)
    texture = _TEXTURE * k * _gauss_unit(white, 1.2 * k)
    background = _background(rng, _rolled(white, rng), k)
    gradient, tint = _light_field(rng, size)
    sigma = float(noise_rng.uniform(1.5, 3.5))
    grain = noise_rng.standard_normal((size, size), dtype=np.float32) * sigma
    noise = np.stack([grain, _rolled(grain, noise_rng), _rolled(grain, noise_rng)], axis=2)
    return _Scene(
        size=size,
        k=k,
        centre=centre.astype(np.float64),
        radius=radius,
        rotation=rotation,
        mould=mould,
        base=base,
        depth=float(rng.uniform(2.5, 6.0)) * k,
        bevel_w=float(rng.uniform(9, 13)) * k,
        body_h=14.0 * k,
        brown_k=float(rng.uniform(0.08, 0.22)),
        edge_k=float(rng.uniform(0.1, 0.25)),
        light=light,
        half=half.astype(np.float32),
        gloss=float(rng.uniform(0.05, 0.25)),
        shadow_shift=-light[:2] / max(float(np.linalg.norm(light[:2])), 1e-6) * shadow_len,
        shadow_strength=float(rng.uniform(0.35, 0.55)),
        texture=texture,
        background=background * tint * gradient,  # lit once; the cake is lit at render
        gradient=gradient,
        tint=tint,
        noise=noise,
    )


def _mould_radius(size: int) -> int:
    """The radius px a mould is drawn at for images of `size` (the largest cake's: parts only shrink it)."""
    return round(0.35 * size)


@functools.lru_cache(maxsize=64)
def _mould_image(mould: int, r0: int) -> np.ndarray:
    """Mould `mould`'s pattern drawn at radius `r0` px, centred in a square uint8 image (255 on raised strokes)."""
    _, strokes = _mould(mould)
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


def _initial_state(rng: np.random.Generator, scene: _Scene) -> _State:
    size, k = scene.size, scene.k
    exponent = _mould(scene.mould)[0]
    # Natural outline: a slight squash and a few low harmonics (well under a borderline dent).
    squash, phi = float(rng.uniform(-0.015, 0.015)), float(rng.uniform(0, math.pi))
    wobble = squash * np.cos(2 * (_THETA - phi))
    for h in range(3, 7):
        wobble += float(rng.normal(0, 0.003)) * np.cos(h * _THETA + float(rng.uniform(0, 2 * math.pi)))
    rho = (scene.radius * _outline_unit(_THETA, exponent) * (1 + wobble)).astype(np.float64)
    # The mould's pattern, drawn once per mould and image size, placed by one affine warp.
    r0 = _mould_radius(size)
    drawn = _mould_image(scene.mould, r0)
    half = drawn.shape[0] / 2 - 0.5
    c, s = math.cos(scene.rotation), math.sin(scene.rotation)
    f = scene.radius / r0
    lin = np.array([[c, -s], [s, c]]) * f
    warp = np.hstack([lin, (scene.centre - lin @ np.array([half, half]))[:, None]]).astype(np.float32)
    canvas = cv2.warpAffine(drawn, warp, (size, size), flags=cv2.INTER_LINEAR)
    sharp = float(rng.uniform(0.9, 1.5)) * k
    pattern = cv2.GaussianBlur(canvas.astype(np.float32) * (1 / 255), (0, 0), sharp)
    mottle = 1.0 + float(rng.uniform(0.03, 0.06)) * _low_noise(rng, size, 10)
    grain = 1.0 + (0.03 / (_TEXTURE * k)) * _rolled(scene.texture, rng)  # albedo grain, 3 %
    albedo = scene.base * (mottle * grain)[..., None]
    return _State(rho=rho, pattern=pattern, bumps=np.zeros((size, size), np.float32), albedo=albedo)


def _outline(scene: _Scene, rho: np.ndarray) -> np.ndarray:
    """(K, 2) float px: the outline polygon on screen."""
    a = _THETA + scene.rotation
    return scene.centre + np.stack([rho * np.cos(a), rho * np.sin(a)], 1)


def _shape(scene: _Scene, rho: np.ndarray) -> _Shape:
    """Coverage, distance from the edge, body height, shadow and backdrop for the outline `rho`."""
    size = scene.size
    outline = _outline(scene, rho)
    m = np.zeros((size, size), np.uint8)
    cv2.fillPoly(m, [np.round(outline * 16).astype(np.int32)], 255, cv2.LINE_AA, 4)
    dist = cv2.distanceTransform((m >= 128).astype(np.uint8), cv2.DIST_L2, 5)
    alpha = m.astype(np.float32) * (1 / 255)
    lo = np.maximum(np.floor(outline.min(0)).astype(int) - 3, 0)
    hi = np.minimum(np.ceil(outline.max(0)).astype(int) + 4, size)
    roi = (slice(int(lo[1]), int(hi[1])), slice(int(lo[0]), int(hi[0])))
    shift = np.float32([[1, 0, scene.shadow_shift[0]], [0, 1, scene.shadow_shift[1]]])
    shadow = cv2.GaussianBlur(cv2.warpAffine(alpha, shift, (size, size)), (0, 0), 4 * scene.k)
    bg_lit = scene.background * (1 - scene.shadow_strength * shadow)[..., None]
    backdrop = np.clip(bg_lit + scene.noise + 0.5, 0, 255).astype(np.uint8)
    bevel = np.clip(dist[roi] / scene.bevel_w, 0, 1)
    return _Shape(
        rho=rho,
        roi=roi,
        alpha_full=alpha,
        dist=dist,
        alpha=alpha[roi][..., None],
        bevel=bevel,
        body=scene.body_h * np.sin(bevel * (math.pi / 2)),
        edge=1 - scene.edge_k * (1 - bevel),
        bg_lit=bg_lit[roi],
        backdrop=backdrop,
    )


_Win = tuple[slice, slice]  # (rows, columns) of a window in the image


def _intersect(a: _Win, b: _Win) -> _Win:
    return (
        slice(max(a[0].start, b[0].start), min(a[0].stop, b[0].stop)),
        slice(max(a[1].start, b[1].start), min(a[1].stop, b[1].stop)),
    )


def _render(scene: _Scene, st: _State, prev: np.ndarray | None = None, window: _Win | None = None) -> np.ndarray:
    """Shade the cake from its state, lay it on the background with its shadow, light it, add noise. uint8 BGR.

    prev, window: `prev` is this state's image before a change confined to `window` (and not to the outline):
    only that window is shaded again, with the same arithmetic per pixel as a full render.
    """
    if st.shape is None or st.shape.rho is not st.rho:
        st.shape = _shape(scene, st.rho)
    sh = st.shape
    if prev is None or window is None:
        write = region = sh.roi
        out = sh.backdrop.copy()
    else:
        out = prev.copy()
        write = _intersect(window, sh.roi)
        if write[0].start >= write[0].stop or write[1].start >= write[1].stop:
            return out
        pad = (slice(write[0].start - 2, write[0].stop + 2), slice(write[1].start - 2, write[1].stop + 2))
        region = _intersect(pad, sh.roi)
    ys, xs = region
    oy, ox = sh.roi[0].start, sh.roi[1].start
    local = (slice(ys.start - oy, ys.stop - oy), slice(xs.start - ox, xs.stop - ox))  # region in roi arrays
    bevel = sh.bevel[local]
    pattern = st.pattern[region]
    height = sh.body[local] + (scene.depth * pattern + scene.texture[region]) * bevel + st.bumps[region]
    gx = cv2.Sobel(height, cv2.CV_32F, 1, 0, ksize=3, scale=0.125)
    gy = cv2.Sobel(height, cv2.CV_32F, 0, 1, ksize=3, scale=0.125)
    inv = 1.0 / np.sqrt(gx * gx + gy * gy + 1.0)
    lx, ly, lz = (float(v) for v in scene.light)
    ndl = np.maximum((lz - gx * lx - gy * ly) * inv, 0)
    shade = (_AMBIENT + (1 - _AMBIENT) * ndl) * (1 / (_AMBIENT + (1 - _AMBIENT) * lz))
    hx, hy, hz = (float(v) for v in scene.half)
    spec = np.maximum((hz - gx * hx - gy * hy) * inv, 0)
    for _ in range(5):  # Blinn-Phong highlight, exponent 32
        spec *= spec
    tone = (1 - scene.brown_k * pattern) * sh.edge[local] * shade
    cake = st.albedo[region] * tone[..., None] + (scene.gloss * spec)[..., None] * _SPEC_COLOUR
    if st.overlay_a is not None and st.overlay_c is not None:
        oa = st.overlay_a[region][..., None]
        cake += (st.overlay_c[region] * shade[..., None] - cake) * oa
    cake *= scene.gradient[region] * scene.tint
    bg = sh.bg_lit[local]
    img = bg + (cake - bg) * sh.alpha[local] + scene.noise[region]
    inner = (
        slice(write[0].start - ys.start, write[0].stop - ys.start),
        slice(write[1].start - xs.start, write[1].stop - xs.start),
    )
    out[write] = np.clip(img[inner] + 0.5, 0, 255).astype(np.uint8)
    return out


# ----------------------------------------------------------------------------------------------------- defects
class _DefectPainter:
    """Applies one defect of a class to the cake's state, re-renders, and keeps it if it is visible and apart.

    Each `_apply_*` method changes `state` inside a window it returns (None: it found no place; the whole image
    for a changed outline). `paint` renders the window again, takes the pixels that changed beyond
    `DIFF_THRESHOLD` from the previous image as the defect's, checks their count, the box against the image edge
    and earlier boxes, and that every pixel that now differs from the template lies in some box; on failure it
    restores the state and tries again.
    """

    def __init__(self, rng: np.random.Generator, scene: _Scene, state: _State, template: np.ndarray) -> None:
        self.rng = rng
        self.scene = scene
        self.state = state
        self.template = template
        self.image = template
        self.size = scene.size
        self.k = scene.k
        self.boxes: list[tuple[int, int, int, int]] = []
        self.covered = np.zeros((self.size, self.size), bool)
        self.full: _Win = (slice(0, self.size), slice(0, self.size))

    @property
    def _shape(self) -> _Shape:
        assert self.state.shape is not None  # the template was rendered from this state
        return self.state.shape

    # -- places
    def _rho_at(self, a: float) -> float:
        return float(self.state.rho[round(a / (2 * math.pi) * _K) % _K])

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

    def _window(self, lo: np.ndarray, hi: np.ndarray) -> _Win | None:
        """The window of px from `lo` to `hi` (x, y floats, inclusive) clipped to the image; None when empty."""
        x0, y0 = max(0, math.floor(lo[0])), max(0, math.floor(lo[1]))
        x1, y1 = min(self.size, math.ceil(hi[0]) + 1), min(self.size, math.ceil(hi[1]) + 1)
        if x0 >= x1 or y0 >= y1:
            return None
        return slice(y0, y1), slice(x0, x1)

    def _blob(self, centre: np.ndarray, r: float, n: int, soft: float) -> tuple[np.ndarray, _Win] | None:
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
            poly = _ellipse(c, axes, float(self.rng.uniform(0, math.pi)))
            cv2.fillPoly(m, [np.round(poly * 16).astype(np.int32)], 255, cv2.LINE_AA, 4)
        w = m.astype(np.float32) * (1 / 255)
        return (cv2.GaussianBlur(w, (0, 0), soft) if soft > 0 else w), win

    # -- defects
    def _apply_crack(self) -> _Win | None:
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

    def _apply_burnt(self) -> _Win | None:
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
        blob = self._blob(p, r, int(rng.integers(2, 5)), 0.3 * r + k)
        if blob is None:
            return None
        w, win = blob
        w *= self._shape.alpha_full[win]
        strength = 0.35 + 0.6 * float(rng.random())
        albedo = st.albedo[win]
        albedo += (_BURNT - albedo) * (strength * w)[..., None]
        return win

    def _apply_misshapen(self) -> _Win | None:
        rng, k, st = self.rng, self.k, self.state
        sev = float(rng.random())
        t0 = float(rng.uniform(0, 2 * math.pi))
        kind = float(rng.random())
        if 0.45 <= kind < 0.8 and self.scene.mould >= _N_MOULDS - _SQUARE_MOULDS:
            # A square cake's side is straight already: a flattened square cake has a corner cut off.
            t0 = math.pi / 4 + math.pi / 2 * int(rng.integers(0, 4)) + float(rng.normal(0, 0.08))
        d = (_THETA - t0 + math.pi) % (2 * math.pi) - math.pi
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
            i0 = round(t0 / (2 * math.pi) * _K) % _K
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

    def _apply_blurred_imprint(self) -> _Win | None:
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

    def _apply_foreign_speck(self) -> _Win | None:
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

    def _apply_underbaked(self) -> _Win | None:
        rng, k, st = self.rng, self.k, self.state
        if rng.random() < 0.35 and not self.boxes:  # the whole cake came out pale (then it is the only defect)
            win = self._shape.roi
            w = self._shape.alpha_full[win]
            strength = 0.4 + 0.35 * float(rng.random())
        else:
            r = (20 + 45 * float(rng.random())) * k
            p = self._inside(r / 2, 1.4 * r)
            blob = None if p is None else self._blob(p, r, int(rng.integers(1, 4)), 0.4 * r)
            if blob is None:
                return None
            w, win = blob
            w *= self._shape.alpha_full[win]
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
                image = _render(self.scene, self.state)
            else:
                image = _render(self.scene, self.state, self.image, win)
            box = self._accept(image, win)
            if box is None:
                self._restore(saved)
                continue
            self.image = image
            return box
        return None

    def _restore(self, saved: _State) -> None:
        st = self.state
        st.rho, st.pattern, st.bumps, st.albedo = saved.rho, saved.pattern, saved.bumps, saved.albedo
        st.overlay_a, st.overlay_c, st.shape = saved.overlay_a, saved.overlay_c, saved.shape

    def _accept(self, image: np.ndarray, win: _Win) -> tuple[int, int, int, int] | None:
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


# ------------------------------------------------------------------------------------------------------- line
class _LineConfig(Protocol):
    """What a line needs from a config (`inspector.config.SyntheticConfig` has it)."""

    seed: int
    defect_rate: float
    size: int


class MooncakeLine:
    """A deterministic stream of synthetic mooncakes.

    seed: the line's seed (any int); part `index` of a seed is always the same part.
    defect_rate: probability in [0, 1] that a part carries defects.
    size: square image size in px; the cake and its features scale with it (designed at 384).
    max_defects: a defective part carries 1..max_defects defects.
    """

    def __init__(self, seed: int = 0, defect_rate: float = 0.3, size: int = BASE_SIZE, max_defects: int = 2) -> None:
        if not 0.0 <= defect_rate <= 1.0:
            raise ValueError(f"defect_rate must be in [0, 1], got {defect_rate}")
        if size < 96:
            raise ValueError(f"size must be at least 96 px, got {size}")
        if max_defects < 1:
            raise ValueError(f"max_defects must be at least 1, got {max_defects}")
        self.seed = seed
        self.defect_rate = defect_rate
        self.size = size
        self.max_defects = max_defects

    @classmethod
    def from_config(cls, config: _LineConfig, max_defects: int = 2) -> MooncakeLine:
        return cls(seed=config.seed, defect_rate=config.defect_rate, size=config.size, max_defects=max_defects)

    def _rng(self, index: int, stream: int) -> np.random.Generator:
        # A salt keeps mooncake part i of seed s unrelated to PCB part i of seed s.
        words = [0x4D43414B, self.seed & 0xFFFFFFFFFFFFFFFF, index & 0xFFFFFFFFFFFFFFFF, stream]
        return np.random.default_rng(words)

    def make_part(self, index: int) -> MooncakePart:
        """Generate part `index` (deterministic by seed and index; 30-80 ms of CPU at 384x384 on a busy 2-core VM)."""
        # Separate streams: the cake (0) and the camera noise (2) do not depend on the defects (1).
        rng = self._rng(index, 0)
        scene = _scene(rng, self._rng(index, 2), self.size)
        state = _initial_state(rng, scene)
        template = _render(scene, state)
        image = template
        rng = self._rng(index, 1)
        boxes: list[tuple[int, int, int, int]] = []
        classes: list[int] = []
        if rng.random() < self.defect_rate:
            painter = _DefectPainter(rng, scene, state, template)
            want = int(rng.integers(1, self.max_defects + 1))
            order = rng.permutation(_NUM_CLASSES).tolist()
            cls_seq = [int(rng.integers(0, _NUM_CLASSES)) for _ in range(want)]
            for cls in cls_seq:
                # A class that finds no place (e.g. after a whole-cake defect) hands over to the others.
                for candidate in [cls, *[c for c in order if c != cls]]:
                    box = painter.paint(candidate)
                    if box is not None:
                        boxes.append(box)
                        classes.append(candidate)
                        break
            image = painter.image
        return MooncakePart(
            index=index,
            image=image,
            template=template,
            boxes=np.array(boxes, np.float32).reshape(-1, 4),
            class_ids=np.array(classes, np.int64),
        )


# ----------------------------------------------------------------------------------------------------- source
class MooncakeSource:
    """The mooncake line as a `FrameSource`: parts 0, 1, 2, ... with their `PartTruth` (as `SyntheticSource`).

    config: anything with `seed`, `defect_rate` and `size` (e.g. `inspector.config.SyntheticConfig`), or None;
        `seed`, `defect_rate`, `size` given here override it (defaults 0, 0.3, 384).
    fps: parts per second; `read()` returns each part at its slot on a fixed schedule (like a conveyor). When
        the reader falls behind by more than one slot, the schedule restarts from now instead of bursting.
        None: as fast as parts can be generated.
    limit: stop (read returns None) after this many parts; None runs forever.
    A reopen continues with the next part, as a camera would after a reconnect.
    """

    def __init__(
        self,
        config: _LineConfig | None = None,
        fps: float | None = None,
        limit: int | None = None,
        *,
        seed: int | None = None,
        defect_rate: float | None = None,
        size: int | None = None,
        max_defects: int = 2,
    ) -> None:
        if fps is not None and fps <= 0:
            raise ValueError(f"fps must be positive, got {fps}")
        if limit is not None and limit < 0:
            raise ValueError(f"limit must be >= 0, got {limit}")

        def pick(value: Any, key: str, default: Any) -> Any:
            if value is not None:
                return value
            return getattr(config, key) if config is not None else default

        self.line = MooncakeLine(
            seed=pick(seed, "seed", 0),
            defect_rate=pick(defect_rate, "defect_rate", 0.3),
            size=pick(size, "size", BASE_SIZE),
            max_defects=max_defects,
        )
        self.fps = fps
        self.limit = limit
        self.index = 0
        self._open = False
        self._due = 0.0
        rate = f"{fps:g} parts/s" if fps else "unpaced"
        line = self.line
        self.description = (
            f"synthetic mooncake line (seed {line.seed}, defect rate {line.defect_rate:g}, {line.size} px, {rate})"
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
    size: int = BASE_SIZE,
    margin: float = LABEL_MARGIN,
    image_ext: str = "jpg",
    max_defects: int = 2,
) -> dict[str, int]:
    """Write `n` mooncakes as an Ultralytics YOLO dataset, in the layout of `inspector.sim.write_dataset`.

    OUT/images/{train,val}/cake_<index>.<ext>, OUT/labels/{train,val}/cake_<index>.txt (boxes grown by `margin`
    px), OUT/templates/{train,val}/cake_<index>.<ext> (defect-free), OUT/data.yaml (names = `MOONCAKE_NAMES`),
    OUT/split.json. The split is a seeded shuffle of indices; `val_fraction=1` puts every part in `val` (a set for
    `inspector eval` / `inspector calibrate`). Returns counts, with boxes per class.
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    if not 0.0 <= val_fraction <= 1.0:
        raise ValueError(f"val_fraction must be in [0, 1], got {val_fraction}")
    line = MooncakeLine(seed=seed, defect_rate=defect_rate, size=size, max_defects=max_defects)
    order = list(range(n))
    random.Random(seed).shuffle(order)
    n_val = round(n * val_fraction)
    val = set(order[:n_val])
    counts = {"train": 0, "val": 0, "boxes": 0, "defective": 0} | {name: 0 for name in MOONCAKE_NAMES.values()}
    split_of: dict[str, list[str]] = {"train": [], "val": []}
    for split in ("train", "val"):
        for sub in ("images", "labels", "templates"):
            (out / sub / split).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        part = line.make_part(i)
        split = "val" if i in val else "train"
        stem = f"cake_{i:06d}"
        _imwrite(out / "images" / split / f"{stem}.{image_ext}", part.image)
        _imwrite(out / "templates" / split / f"{stem}.{image_ext}", part.template)
        (out / "labels" / split / f"{stem}.txt").write_text(part.yolo_label(margin))
        split_of[split].append(stem)
        counts[split] += 1
        counts["boxes"] += len(part.boxes)
        counts["defective"] += int(part.defective)
        for name in part.class_names:
            counts[name] += 1
    write_data_yaml(out, MOONCAKE_NAMES)
    meta = {
        "generator": "inspector.mooncake",
        "seed": seed,
        "defect_rate": defect_rate,
        "size": size,
        "margin": margin,
        "max_defects": max_defects,
    }
    (out / "split.json").write_text(json.dumps({**meta, "val_fraction": val_fraction, **split_of}, indent=1))
    return counts


def write_folder(
    out: Path,
    n: int,
    seed: int = 0,
    defect_rate: float = 0.3,
    size: int = BASE_SIZE,
    image_ext: str = "png",
    start: int = 0,
) -> Path:
    """Write parts `start..start+n-1` as OUT/good/part_<index>.<ext> and OUT/bad/part_<index>.<ext>.

    The manifest OUT/truth.json holds `{generator, seed, defect_rate, size, parts: [{file, **PartTruth.to_dict()}]}`
    with `file` relative to OUT, in index order (the folder source reads it as it reads `inspector.sim`'s).
    Returns the manifest's path.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    line = MooncakeLine(seed=seed, defect_rate=defect_rate, size=size)
    (out / "good").mkdir(parents=True, exist_ok=True)
    (out / "bad").mkdir(parents=True, exist_ok=True)
    parts = []
    for i in range(start, start + n):
        part = line.make_part(i)
        rel = f"{'bad' if part.defective else 'good'}/part_{i:06d}.{image_ext}"
        _imwrite(out / rel, part.image)
        parts.append({"file": rel, **part.truth().to_dict()})
    manifest = out / "truth.json"
    meta = {"generator": "inspector.mooncake", "seed": seed, "defect_rate": defect_rate, "size": size}
    manifest.write_text(json.dumps({**meta, "parts": parts}, indent=1))
    return manifest


_CLASS_COLOURS = {  # BGR, for contact sheets
    CRACK: (255, 0, 255),
    BURNT: (0, 0, 255),
    MISSHAPEN: (255, 255, 0),
    BLURRED_IMPRINT: (0, 255, 0),
    FOREIGN_SPECK: (255, 128, 0),
    UNDERBAKED: (0, 255, 255),
}


def contact_sheet(parts: list[MooncakePart], cols: int = 6, with_templates: bool = False) -> np.ndarray:
    """One BGR image: each part (and, if asked, its template beside it) with its tight boxes and class names."""
    if not parts:
        raise ValueError("no parts for a contact sheet")
    tiles = []
    for part in parts:
        tile = part.image.copy()
        for (x0, y0, x1, y1), c in zip(part.boxes.astype(int), part.class_ids, strict=True):
            colour = _CLASS_COLOURS[int(c)]
            cv2.rectangle(tile, (x0 - 1, y0 - 1), (x1, y1), colour, 1)
            cv2.putText(tile, MOONCAKE_NAMES[int(c)], (x0, max(10, y0 - 3)), cv2.FONT_HERSHEY_SIMPLEX, 0.4, colour, 1)
        caption = f"#{part.index} " + ("bad" if part.defective else "good")
        cv2.putText(tile, caption, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1)
        if with_templates:
            tile = np.hstack([tile, part.template])
        tiles.append(tile)
    h, w = tiles[0].shape[:2]
    rows = -(-len(tiles) // cols)
    sheet = np.full((rows * (h + 4), min(cols, len(tiles)) * (w + 4), 3), 255, np.uint8)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, cols)
        sheet[r * (h + 4) : r * (h + 4) + h, c * (w + 4) : c * (w + 4) + w] = tile
    return sheet


def _imwrite(path: Path, image: np.ndarray) -> None:
    params = [cv2.IMWRITE_JPEG_QUALITY, 95] if path.suffix.lower() in {".jpg", ".jpeg"} else []
    if not cv2.imwrite(str(path), image, params):
        raise OSError(f"{path}: could not write the image")


# --------------------------------------------------------------------------------------------------------- cli
def main(argv: list[str] | None = None) -> int:
    """`python -m inspector.mooncake {dataset,folder,sheet,bench}`: write synthetic data or time the generator."""
    parser = argparse.ArgumentParser(prog="python -m inspector.mooncake", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="action", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--seed", type=int, default=0)
    common.add_argument("--size", type=int, default=BASE_SIZE)
    p = sub.add_parser("dataset", parents=[common], help="write a YOLO dataset (images, labels, data.yaml)")
    p.add_argument("out", type=Path)
    p.add_argument("-n", type=int, default=500)
    p.add_argument("--defect-rate", type=float, default=0.5)
    p.add_argument("--val-fraction", type=float, default=0.2)
    p = sub.add_parser("folder", parents=[common], help="write good/ and bad/ images with truth.json")
    p.add_argument("out", type=Path)
    p.add_argument("-n", type=int, default=100)
    p.add_argument("--defect-rate", type=float, default=0.3)
    p = sub.add_parser("sheet", parents=[common], help="write a contact sheet PNG with the boxes drawn")
    p.add_argument("out", type=Path)
    p.add_argument("-n", type=int, default=24)
    p.add_argument("--start", type=int, default=0)
    p.add_argument("--cols", type=int, default=6)
    p.add_argument("--defect-rate", type=float, default=1.0)
    p.add_argument("--templates", action="store_true", help="put each part's template beside it")
    p = sub.add_parser("bench", parents=[common], help="time part generation")
    p.add_argument("-n", type=int, default=100)
    p.add_argument("--defect-rate", type=float, default=1.0)
    args = parser.parse_args(argv)
    try:
        if args.action == "dataset":
            counts = write_dataset(args.out, args.n, args.seed, args.defect_rate, args.val_fraction, args.size)
            print(json.dumps({"out": str(args.out), **counts}))
        elif args.action == "folder":
            manifest = write_folder(args.out, args.n, args.seed, args.defect_rate, args.size)
            print(json.dumps({"out": str(args.out), "manifest": str(manifest), "parts": args.n}))
        elif args.action == "sheet":
            line = MooncakeLine(args.seed, args.defect_rate, args.size)
            parts = [line.make_part(i) for i in range(args.start, args.start + args.n)]
            _imwrite(args.out, contact_sheet(parts, args.cols, args.templates))
            print(json.dumps({"out": str(args.out), "parts": args.n}))
        else:
            line = MooncakeLine(args.seed, args.defect_rate, args.size)
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
        print(f"inspector.mooncake: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
