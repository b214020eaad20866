"""Placement jitter: where, and under what light, a part lies in the camera's view relative to its golden reference.

A real line never puts two parts on the same pixels: the conveyor leaves a few px of shift and up to about a degree
of rotation, and the light drifts. `Jitter` holds the limits and draws one part's `Placement` from a generator;
`Placement.apply` renders an image as that part is seen (sub-pixel warp, brightness and contrast, sensor noise),
`Placement.map_boxes` carries boxes along with the part, and `Placement.undo` maps a seen image back onto the
reference's pixel grid with its light undone: what a perfect registration does, for tests and ground truth.

Coordinates are OpenCV's: pixel (x, y) has its centre at (x, y). The motion is a rotation about the view's centre
followed by a shift, reference px -> seen px.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import cv2
import numpy as np

__all__ = ["MID_GREY", "Jitter", "Placement", "board_margin"]

MID_GREY = 127.5  # contrast turns about this level
_SUBPIXEL_BITS = 5  # OpenCV's INTER_BITS: remap interpolates on a 1/32 px grid
_SUBPIXELS = 1 << _SUBPIXEL_BITS


def board_margin(size: int) -> int:
    """Px of board drawn around a `size` view so that a jittered view never looks past the board's edge."""
    return size // 16 + 8


@dataclass(frozen=True, slots=True)
class Jitter:
    """Limits of the placement jitter; each part draws its own values uniformly within them.

    shift_px: shift along each axis, in [-shift_px, shift_px] px (sub-pixel).
    rotation_deg: rotation about the view's centre, in [-rotation_deg, rotation_deg] degrees.
    brightness: grey levels added, in [-brightness, brightness].
    contrast: gain about mid-grey, in [1 - contrast, 1 + contrast].
    noise: sensor noise, Gaussian with this standard deviation in grey levels.
    """

    shift_px: float = 3.0
    rotation_deg: float = 1.0
    brightness: float = 10.0
    contrast: float = 0.05
    noise: float = 2.0

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                raise ValueError(f"jitter {name} must be a finite number >= 0, got {value!r}")
        if self.contrast >= 1:
            raise ValueError(f"jitter contrast must be below 1 (a gain of 1 - contrast > 0), got {self.contrast}")
        if self.rotation_deg > 45:
            raise ValueError(f"jitter rotation_deg must be at most 45, got {self.rotation_deg}")

    def reach(self, size: int) -> float:
        """The farthest (px) that any pixel of a `size` view can move: both shifts plus the rotation at a corner."""
        corner = size / math.sqrt(2)
        return math.hypot(self.shift_px, self.shift_px) + 2 * corner * math.sin(math.radians(self.rotation_deg) / 2)

    def check_fits(self, size: int) -> None:
        """ValueError when a jittered `size` view could look past the `board_margin` drawn around it."""
        room = board_margin(size) - 2  # bilinear sampling reads one px beyond; one more for rounding
        if self.reach(size) > room:
            raise ValueError(
                f"jitter moves pixels up to {self.reach(size):.1f} px at size {size}, more than the {room} px of "
                "board around the view: lower jitter shift_px or rotation_deg"
            )

    def draw(self, rng: np.random.Generator, size: int) -> Placement:
        """One part's placement in a `size` view, drawn from `rng`."""
        return Placement(
            size=size,
            dx=float(rng.uniform(-self.shift_px, self.shift_px)),
            dy=float(rng.uniform(-self.shift_px, self.shift_px)),
            rotation_deg=float(rng.uniform(-self.rotation_deg, self.rotation_deg)),
            gain=float(rng.uniform(1 - self.contrast, 1 + self.contrast)),
            offset=float(rng.uniform(-self.brightness, self.brightness)),
            noise=self.noise,
            noise_seed=int(rng.integers(0, 2**63)),
        )

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Placement:
    """One part's jitter: the motion (reference px -> seen px) and the light, in a `size` x `size` view.

    rotation_deg: positive turns clockwise as seen on screen (OpenCV's y axis points down), about the view's
    centre ((size - 1) / 2, (size - 1) / 2); then the shift (dx, dy).
    gain, offset: seen = gain * (x - MID_GREY) + MID_GREY + offset + noise, rounded and clipped to uint8.
    noise_seed: the sensor noise's seed, so that a placement renders the same image every time.
    """

    size: int
    dx: float
    dy: float
    rotation_deg: float
    gain: float
    offset: float
    noise: float
    noise_seed: int

    @property
    def matrix(self) -> np.ndarray:
        """(2, 3) float64 affine matrix, reference px -> seen px (what a registration should recover)."""
        c = (self.size - 1) / 2
        rotation = cv2.getRotationMatrix2D((c, c), -self.rotation_deg, 1.0)
        rotation[:, 2] += (self.dx, self.dy)
        return rotation

    def apply(self, image: np.ndarray, origin: int = 0, noise: bool = True) -> np.ndarray:
        """`image` as this part is seen: (size, size[, C]) uint8, warped (bilinear), lit and, unless `noise` is
        False, with sensor noise (the same in every channel, so a grey BGR image stays grey).

        image: (H, W[, C]) uint8 whose pixel (origin, origin) is the view's (0, 0); a board drawn `board_margin`
        px beyond the view on every side lets the view move without bringing in an edge.
        """
        warped = cv2.remap(image, *self._sample_map(origin), cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        lit = self.gain * (warped.astype(np.float32) - MID_GREY) + (MID_GREY + self.offset)
        if noise and self.noise > 0:
            grain = np.random.default_rng(self.noise_seed).normal(0.0, self.noise, (self.size, self.size))
            lit += grain.astype(np.float32)[..., None] if lit.ndim == 3 else grain.astype(np.float32)
        return np.clip(np.rint(lit), 0, 255).astype(np.uint8)

    def _sample_map(self, origin: int) -> tuple[np.ndarray, np.ndarray]:
        """OpenCV's fixed-point remap maps (where each seen pixel samples, on a 1/32 px grid) into an image whose
        pixel (origin, origin) is the view's (0, 0). Quantised in view coordinates before `origin` is added, so
        that the same board pixels give the same seen pixels whatever lies around them (`warpAffine` would round
        differently for each origin)."""
        inverse = cv2.invertAffineTransform(self.matrix)
        grid = np.arange(self.size, dtype=np.float64)
        x = inverse[0, 0] * grid[None, :] + inverse[0, 1] * grid[:, None] + inverse[0, 2]
        y = inverse[1, 0] * grid[None, :] + inverse[1, 1] * grid[:, None] + inverse[1, 2]
        qx = np.rint(x * _SUBPIXELS).astype(np.int32)
        qy = np.rint(y * _SUBPIXELS).astype(np.int32)
        whole = np.stack([(qx >> _SUBPIXEL_BITS) + origin, (qy >> _SUBPIXEL_BITS) + origin], axis=-1)
        fraction = (qy & (_SUBPIXELS - 1)) * _SUBPIXELS + (qx & (_SUBPIXELS - 1))
        return whole.astype(np.int16), fraction.astype(np.uint16)

    def map_boxes(self, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Carry (n, 4) half-open whole-px xyxy boxes along with the part: (boxes (k, 4) float32, kept (n,) bool).

        A box becomes the whole-px box of every seen pixel whose bilinear sample touches one of its pixels (the
        pixels the defect can change), clipped to the view; a box moved entirely out of the view is dropped
        (`kept` False for it).
        """
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        # A seen pixel's sample touches source pixels less than 1 px from it: the source box's pixel centres
        # x0..x1-1, grown to the open interval (x0 - 1, x1).
        x0, y0, x1, y1 = boxes[:, 0] - 1, boxes[:, 1] - 1, boxes[:, 2], boxes[:, 3]
        corners = np.stack([np.stack(c, axis=1) for c in ((x0, y0), (x1, y0), (x0, y1), (x1, y1))], axis=1)
        m = self.matrix
        seen = corners @ m[:, :2].T + m[:, 2]  # (n, 4, 2)
        lo = np.floor(seen.min(axis=1)) + 1  # first pixel centre strictly inside
        hi = np.ceil(seen.max(axis=1))  # one past the last
        out = np.concatenate([lo, hi], axis=1).clip(0, self.size)
        kept = (out[:, 2] > out[:, 0]) & (out[:, 3] > out[:, 1])
        return out[kept].astype(np.float32), kept

    def undo(self, image: np.ndarray) -> np.ndarray:
        """A seen (size, size[, C]) image mapped back onto the reference's grid with its light undone: float32 of
        the same shape (bilinear; pixels from outside the view repeat its edge)."""
        back = cv2.warpAffine(
            image.astype(np.float32),
            self.matrix,
            (self.size, self.size),
            flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
            borderMode=cv2.BORDER_REPLICATE,
        )
        return (back - (MID_GREY + self.offset)) / self.gain + MID_GREY

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the motion (also as `matrix`, reference px -> seen px), the light and the noise level."""
        return {
            "matrix": self.matrix.tolist(),
            "dx": self.dx,
            "dy": self.dy,
            "rotation_deg": self.rotation_deg,
            "gain": self.gain,
            "offset": self.offset,
            "noise": self.noise,
        }
