"""The scene of a part: what defects do not change (the cake's placement, size and tone, the background, the
lighting drift, the camera noise), drawn from the part's cake stream and noise stream."""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from inspector.sim.mooncake.mould import N_MOULDS, SQUARE_MOULDS

__all__ = ["BASE_SIZE", "TEXTURE", "Scene", "low_noise", "make_scene", "rolled"]

BASE_SIZE = 384  # the image size the feature sizes are given for; other sizes scale them

# BGR colours (0..255)
_GOLDEN_LIGHT = np.array([72, 152, 214], np.float32)
_GOLDEN_DARK = np.array([34, 92, 162], np.float32)


@dataclass(slots=True)
class Scene:
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


TEXTURE = 0.25  # height std of the pastry's fine surface texture, px at BASE_SIZE


def _gauss_unit(white: np.ndarray, sigma: float) -> np.ndarray:
    """White noise blurred by `sigma` px and scaled back to a standard deviation of about 1."""
    return cv2.GaussianBlur(white, (0, 0), sigma) * (2 * math.sqrt(math.pi) * sigma)


def _streaks_unit(white: np.ndarray, length: int) -> np.ndarray:
    """White noise smeared along x over `length` px (streaks), standard deviation 1."""
    return cv2.blur(white, (length, 1)) * math.sqrt(length)


def low_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Smooth noise (size, size) float32 with std about 1 and features about size / cells px wide."""
    small = rng.standard_normal((cells, cells)).astype(np.float32)
    return cv2.resize(small * (1 / max(float(small.std()), 1e-6)), (size, size), interpolation=cv2.INTER_CUBIC)


def rolled(field: np.ndarray, rng: np.random.Generator) -> np.ndarray:
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
        tex = 5.0 * _streaks_unit(white, max(3, round(15 * k))) + 3.0 * low_noise(rng, size, 8)
        period = float(rng.uniform(5, 8)) * k
        t = np.arange(size, dtype=np.float32)
        tex += np.outer(2.0 * np.sin(t * (2 * math.pi / period)), np.sin(t * (2 * math.pi / (3 * period))))
        return base + tex[..., None]
    if kind < 0.8:  # baking paper: warm white, crinkled (shaded low-frequency height), fibres
        base = np.array([198, 214, 226], np.float32) + jitter
        crinkle = low_noise(rng, size, int(rng.integers(14, 28)))
        slope = cv2.Sobel(crinkle, cv2.CV_32F, 1, 0, ksize=3) + cv2.Sobel(crinkle, cv2.CV_32F, 0, 1, ksize=3)
        slope *= 0.06 / max(float(np.abs(slope).max()), 1e-6)
        shade = 1.0 + 0.03 * low_noise(rng, size, 6) - slope
        fibres = 2.5 * _gauss_unit(white, 0.8)
        return base * shade[..., None] + fibres[..., None]
    # perforated tray: brushed grey metal with a grid of dark holes
    base = np.array([104, 108, 110], np.float32) + jitter
    brushed = 4.0 * _streaks_unit(white, max(3, round(21 * k))) + 3.0 * low_noise(rng, size, 5)
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


def make_scene(rng: np.random.Generator, noise_rng: np.random.Generator, size: int) -> Scene:
    k = size / BASE_SIZE
    square = rng.random() < 0.15
    n_round = N_MOULDS - SQUARE_MOULDS
    mould = int(rng.integers(n_round, N_MOULDS)) if square else int(rng.integers(0, n_round))
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
    texture = TEXTURE * k * _gauss_unit(white, 1.2 * k)
    background = _background(rng, rolled(white, rng), k)
    gradient, tint = _light_field(rng, size)
    sigma = float(noise_rng.uniform(1.5, 3.5))
    grain = noise_rng.standard_normal((size, size), dtype=np.float32) * sigma
    noise = np.stack([grain, rolled(grain, noise_rng), rolled(grain, noise_rng)], axis=2)
    return Scene(
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
