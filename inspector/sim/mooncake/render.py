"""Rendering a cake: its state (outline, pressed pattern, bumps, colours, particles), the layers that follow from
the outline, and the shading of the relief under the scene's light onto the background, whole or in a window."""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from inspector.sim.mooncake.mould import mould_design, mould_image, mould_radius, outline_unit
from inspector.sim.mooncake.scene import TEXTURE, Scene, low_noise, rolled

__all__ = ["OUTLINE_SAMPLES", "THETA", "Shape", "State", "Win", "initial_state", "render"]

OUTLINE_SAMPLES = 720  # outline samples (every half degree)


@dataclass(frozen=True, slots=True)
class Shape:
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
class State:
    """What defects change: the outline, the pressed pattern, grooves and bumps, colours, particles on top."""

    rho: np.ndarray  # (OUTLINE_SAMPLES,) outline radius px at cake-frame angles 2*pi*i/OUTLINE_SAMPLES
    pattern: np.ndarray  # (S, S) float32 in [0, 1], relief of the mould's pattern
    bumps: np.ndarray  # (S, S) float32 height offsets (cracks negative, particles positive)
    albedo: np.ndarray  # (S, S, 3) float32 BGR
    overlay_a: np.ndarray | None = None  # (S, S) float32 opacity of particles (None: none)
    overlay_c: np.ndarray | None = None  # (S, S, 3) float32 their colour
    shape: Shape | None = None  # cache for the current `rho`

    def copy(self) -> State:
        return State(
            self.rho,  # never changed in place: a misshapen defect assigns a new array
            self.pattern.copy(),
            self.bumps.copy(),
            self.albedo.copy(),
            None if self.overlay_a is None else self.overlay_a.copy(),
            None if self.overlay_c is None else self.overlay_c.copy(),
            self.shape,
        )


THETA = np.linspace(0, 2 * math.pi, OUTLINE_SAMPLES, endpoint=False)
_AMBIENT = 0.45
_SPEC_COLOUR = np.array([205, 232, 250], np.float32)


def initial_state(rng: np.random.Generator, scene: Scene) -> State:
    size, k = scene.size, scene.k
    exponent = mould_design(scene.mould)[0]
    # Natural outline: a slight squash and a few low harmonics (well under a borderline dent).
    squash, phi = float(rng.uniform(-0.015, 0.015)), float(rng.uniform(0, math.pi))
    wobble = squash * np.cos(2 * (THETA - phi))
    for h in range(3, 7):
        wobble += float(rng.normal(0, 0.003)) * np.cos(h * THETA + float(rng.uniform(0, 2 * math.pi)))
    rho = (scene.radius * outline_unit(THETA, exponent) * (1 + wobble)).astype(np.float64)
    # The mould's pattern, drawn once per mould and image size, placed by one affine warp.
    r0 = mould_radius(size)
    drawn = mould_image(scene.mould, r0)
    half = drawn.shape[0] / 2 - 0.5
    c, s = math.cos(scene.rotation), math.sin(scene.rotation)
    f = scene.radius / r0
    lin = np.array([[c, -s], [s, c]]) * f
    warp = np.hstack([lin, (scene.centre - lin @ np.array([half, half]))[:, None]]).astype(np.float32)
    canvas = cv2.warpAffine(drawn, warp, (size, size), flags=cv2.INTER_LINEAR)
    sharp = float(rng.uniform(0.9, 1.5)) * k
    pattern = cv2.GaussianBlur(canvas.astype(np.float32) * (1 / 255), (0, 0), sharp)
    mottle = 1.0 + float(rng.uniform(0.03, 0.06)) * low_noise(rng, size, 10)
    grain = 1.0 + (0.03 / (TEXTURE * k)) * rolled(scene.texture, rng)  # albedo grain, 3 %
    albedo = scene.base * (mottle * grain)[..., None]
    return State(rho=rho, pattern=pattern, bumps=np.zeros((size, size), np.float32), albedo=albedo)


def _outline(scene: Scene, rho: np.ndarray) -> np.ndarray:
    """(K, 2) float px: the outline polygon on screen."""
    a = THETA + scene.rotation
    return scene.centre + np.stack([rho * np.cos(a), rho * np.sin(a)], 1)


def _shape(scene: Scene, rho: np.ndarray) -> Shape:
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
    return Shape(
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


Win = tuple[slice, slice]  # (rows, columns) of a window in the image


def _intersect(a: Win, b: Win) -> Win:
    return (
        slice(max(a[0].start, b[0].start), min(a[0].stop, b[0].stop)),
        slice(max(a[1].start, b[1].start), min(a[1].stop, b[1].stop)),
    )


def render(scene: Scene, st: State, prev: np.ndarray | None = None, window: Win | None = None) -> np.ndarray:
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
