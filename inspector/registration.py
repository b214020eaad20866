"""Registration of a frame to its recipe's golden reference (issue 15), and the typed answer it gives.

`Registrar(reference)` is built once per reference: it keeps a two-level pyramid of the reference (grey, at half
and at a quarter of its size, lightly blurred), its textured pixels (strong gradients, at most `MAX_POINTS` a
level), their steepest-descent images and the Hessians. `register(frame)` then finds the motion that maps the
reference onto the frame with inverse-compositional Lucas-Kanade (Baker & Matthews 2004): the reference is the
template, so its gradients and Hessian never change and one iteration costs one sparse warp of the frame plus a
(parameters x points) product. Each iteration matches the frame's brightness to the reference's (gain and offset
over the textured pixels), so lighting drift does not bias the motion. The points live in a grid that OpenCV moves
(`cv2.transform`) and samples (`cv2.remap`) in one call each; while every point stays inside the frame (their
bounding box decides), the Hessian and the reference's share of each update are constants of the level, and an
iteration is a handful of vector operations (points leaving the frame drop out, with the Hessian of those that
stay).

Why half resolution is the finest level: it is where the answer is settled to a few hundredths of a pixel on
synthetic warps, and it costs a quarter of the full frame's pixels. Until 2026-12-07 a full-resolution level
refined it further; on DeepPCB's scans that moved the warp by a median 0.08 px (their residual is not affine,
so every point set settles a little differently), changed no detection score that matters (held-out and training
figures in the model card) and cost about 1.5 ms of CPU a frame, 6 % of a 2-core box's throughput.

Motion models: `rigid` (shift and rotation: a part on a fixture or a conveyor, the default), `similarity` (plus a
uniform scale: camera distance drift) and `affine` (plus a different scale a side and shear: flatbed scans such as
DeepPCB's, whose test images are stretched against their templates by up to about 1.5 % along one axis).

Starts, tried in turn until one is accepted: no motion, then the shift found by phase correlation on the half
level (large shifts, where Lucas-Kanade alone would fall into a wrong minimum). Each start runs the quarter level
then the half one.

Acceptance: the zero-mean normalised correlation between the warped frame and the reference, on every textured
pixel of the half level (both sides of each edge; smooth enough that jagged scanned edges do not count), is at
least `Limits.min_correlation`, and the motion is within `Limits` (shift, angle, scale). Anything else is an
`Unregistered` with a reason, never an exception: the line turns it into a fail-safe reject (`unregistered`).
`Registered.reference` is the full-resolution reference resampled onto the frame's pixel grid, ready for
`inspector.reference.reference_composite`.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

from inspector.reference import grey

__all__ = [
    "MAX_POINTS",
    "MOTION_MODELS",
    "FailureReason",
    "Limits",
    "Motion",
    "MotionModel",
    "Registered",
    "Registrar",
    "Unregistered",
    "register",
]

# Textured pixels tracked on the half and the quarter level: plenty for sub-pixel accuracy, a bounded cost a frame.
MAX_POINTS = (10_000, 3_000)
_BLUR_SIGMA = 0.5  # with pyrDown's, smooths binarised edges so that the linearisation holds over about a pixel
_BLUR_KERNEL = cv2.getGaussianKernel(5, _BLUR_SIGMA, cv2.CV_32F)  # GaussianBlur's own size for this sigma
_GRID_COLS = 1024  # tracked points per row of a level's grid (cv2.remap wants maps under 32767 a side)
_ITERATIONS = (40, 20)  # most iterations on the quarter, then the half level
_STEP_DONE_PX = 0.005  # an update moving no point by more than this (at full resolution) has converged
_MIN_TEXTURE = (200, 50)  # textured pixels the reference must have on the half and the quarter level
_DAMPING = 1e-2  # ridge on the Hessian's diagonal, relative to the translation terms (see `_damping`)

MotionModel = Literal["rigid", "similarity", "affine"]
MOTION_MODELS: tuple[MotionModel, ...] = ("rigid", "similarity", "affine")
FailureReason = Literal["size", "diverged", "low-correlation", "motion-limit"]


@dataclass(frozen=True, slots=True)
class Limits:
    """What an accepted registration may be: correlation floor and the largest motion a part may have.

    max_scale_change bounds |s - 1| for each principal scale s of the motion (1 for a rigid one).
    """

    min_correlation: float = 0.9
    max_shift_px: float = 40.0
    max_angle_deg: float = 5.0
    max_scale_change: float = 0.05

    def __post_init__(self) -> None:
        if not -1.0 <= self.min_correlation <= 1.0:
            raise ValueError(f"min_correlation must be in [-1, 1], got {self.min_correlation}")
        if self.max_shift_px <= 0 or self.max_angle_deg <= 0 or self.max_scale_change < 0:
            raise ValueError("max_shift_px and max_angle_deg must be > 0 and max_scale_change >= 0")


@dataclass(frozen=True, slots=True)
class Motion:
    """Where the reference sits in the frame: its centre moved by (dx, dy) px, turned by angle_deg (clockwise on
    the screen: image y points down), scaled by scale (the mean of the principal scales, 1 for a rigid motion).
    scale_range: the smallest and largest principal scale (differ only for an affine motion)."""

    dx: float
    dy: float
    angle_deg: float
    scale: float = 1.0
    scale_range: tuple[float, float] = (1.0, 1.0)

    def to_dict(self) -> dict[str, float]:
        return {
            "dx": round(self.dx, 3),
            "dy": round(self.dy, 3),
            "angle_deg": round(self.angle_deg, 4),
            "scale": round(self.scale, 5),
        }


@dataclass(frozen=True, slots=True)
class Registered:
    """An accepted registration.

    warp: 2x3 float64, reference pixel -> frame pixel (`cv2.warpAffine(reference, warp, size)` puts the reference
    on the frame's grid); reference: that resampled reference, HxW uint8 grey, the frame's size;
    correlation: the acceptance score; ms: time the registration took; frame: the frame in grey (HxW uint8, the
    frame itself when it was grey), so that the composite need not convert it again.
    """

    warp: np.ndarray
    reference: np.ndarray
    motion: Motion
    correlation: float
    ms: float
    frame: np.ndarray
    ok: Literal[True] = True


@dataclass(frozen=True, slots=True)
class Unregistered:
    """A frame that could not be put on its reference: reason (a `FailureReason`), what was measured, why."""

    reason: FailureReason
    detail: str
    ms: float
    correlation: float | None = None
    motion: Motion | None = None
    ok: Literal[False] = False


@dataclass(frozen=True, slots=True)
class _Candidate:
    warp: np.ndarray  # 3x3, reference pixel -> frame pixel
    motion: Motion
    correlation: float
    ok: Literal[True] = True


@dataclass(frozen=True, slots=True)
class _Points:
    """Pixels of one pyramid level sampled together, in centred coordinates: x, y (n,) float32, also padded
    row-major into a (rows, _GRID_COLS, 2) grid of (x, y) with copies of the first point, so that one cv2.transform
    moves them and one cv2.remap samples them, without a copy (the first n samples are the points').
    box: their bounding box (left, top, right, bottom); radius: the largest |x| or |y|, how far a linear change of
    the warp moves a point at most."""

    x: np.ndarray
    y: np.ndarray
    grid: np.ndarray
    box: tuple[float, float, float, float]
    radius: float

    @classmethod
    def of(cls, x: np.ndarray, y: np.ndarray) -> _Points:
        rows = -(-len(x) // _GRID_COLS)
        grid = np.empty((rows * _GRID_COLS, 2), np.float32)
        grid[:] = x[0], y[0]
        grid[: len(x), 0], grid[: len(y), 1] = x, y
        return cls(
            x=x,
            y=y,
            grid=grid.reshape(rows, _GRID_COLS, 2),
            box=(float(x.min()), float(y.min()), float(x.max()), float(y.max())),
            radius=float(max(np.abs(x).max(), np.abs(y).max())),
        )

    @property
    def n(self) -> int:
        return len(self.x)

    def where(self, warp: np.ndarray, centre: tuple[float, float]) -> np.ndarray:
        """The points under `warp` (3x3, centred coordinates) in the pixel coordinates of an image centred on
        `centre`: a (rows, _GRID_COLS, 2) float32 map of (x, y), padding included, as cv2.remap takes it."""
        moved = warp[:2].copy()
        moved[:, 2] += centre
        return cv2.transform(self.grid, moved)

    def all_inside(self, warp: np.ndarray, centre: tuple[float, float], shape: tuple[int, ...]) -> bool:
        """Whether every point lands inside an image of `shape` under `warp`: an affine map takes the points'
        hull inside the image of their bounding box, so the box's four corners decide."""
        (a, b, tx), (c, d, ty) = warp[:2].tolist()
        tx, ty = tx + centre[0], ty + centre[1]
        left, top, right, bottom = self.box
        for x, y in ((left, top), (right, top), (left, bottom), (right, bottom)):
            u, v = a * x + b * y + tx, c * x + d * y + ty
            if not (0 <= u <= shape[1] - 1 and 0 <= v <= shape[0] - 1):
                return False
        return True

    def inside(self, where: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        """(n,) bool: which of the points, at `where`'s map, lie inside an image of `shape`."""
        x, y = where[..., 0].reshape(-1)[: self.n], where[..., 1].reshape(-1)[: self.n]
        return (x >= 0) & (x <= shape[1] - 1) & (y >= 0) & (y <= shape[0] - 1)


def _sample(image: np.ndarray, where: np.ndarray, n: int) -> np.ndarray:
    """(n,) float32 bilinear samples of `image` at the first n points of a `_Points.where` map (0 outside)."""
    return cv2.remap(image, where, None, cv2.INTER_LINEAR).reshape(-1)[:n]


@dataclass(frozen=True, slots=True)
class _Band:
    """Textured pixels of the reference's half level and their values (zero mean), for the acceptance score."""

    points: _Points
    values: np.ndarray  # (n,) float32, zero mean
    norm: float  # |values|

    @classmethod
    def of(cls, points: _Points, values: np.ndarray) -> _Band:
        centred = (values - values.mean()).astype(np.float32)
        return cls(points, centred, math.sqrt(float(np.einsum("i,i->", centred, centred))))

    def correlation(self, image: np.ndarray, warp: np.ndarray, centre: tuple[float, float]) -> float:
        """Zero-mean normalised correlation of `image` under `warp` (centred coordinates of the level) with the
        reference on these pixels (those that stay inside the image)."""
        where = self.points.where(warp, centre)
        sampled = _sample(image, where, self.points.n)
        if self.points.all_inside(warp, centre, image.shape):
            # the values have zero mean: sum((s - mean(s)) * v) = sum(s * v)
            centred = sampled - np.float32(sampled.mean())
            denom = math.sqrt(float(np.einsum("i,i->", centred, centred))) * self.norm
            return float(np.einsum("i,i->", sampled, self.values)) / denom if denom > 0 else 0.0
        inside = self.points.inside(where, image.shape)
        return _zncc(sampled[inside].astype(np.float64), self.values[inside].astype(np.float64))


@dataclass(frozen=True, slots=True)
class _Level:
    """The reference at one pyramid level (coordinates relative to the level's centre pixel)."""

    factor: float  # full-resolution pixels per pixel of this level
    least: int  # fewest textured points it may track
    centre: tuple[float, float]
    points: _Points  # the textured points used for tracking
    values: np.ndarray  # (n,) float32 at the points, zero mean, unit std
    sd: np.ndarray  # (k, n) float32: one steepest-descent image a parameter
    sd_values: np.ndarray  # (k,) float64: sd @ values, constant for the level
    hessian: np.ndarray  # (k, k) float64, damped (see `_damping`)
    hessian_inv: np.ndarray


def _pyramid(image: np.ndarray) -> list[np.ndarray]:
    """[half, quarter] float32 levels of a uint8 grey `image`: pyrDown, a light blur, pyrDown again."""
    # pyrDown's own smoothing (sigma about 1.1 px of the frame) plus this blur (0.5 px of the half level) is what a
    # 1 px blur of the frame and then pyrDown gave the half level before, at a quarter of the cost
    half = cv2.sepFilter2D(
        cv2.pyrDown(image), cv2.CV_32F, _BLUR_KERNEL, _BLUR_KERNEL, borderType=cv2.BORDER_REFLECT_101
    )
    return [half, cv2.pyrDown(half)]


def _to_full(level: _Level) -> np.ndarray:
    """3x3: centred coordinates of `level` -> pixel coordinates of the frame (pyrDown's pixel i sits on 2i)."""
    f = level.factor
    return np.array([[f, 0, f * level.centre[0]], [0, f, f * level.centre[1]], [0, 0, 1]], float)


def _shift(dx: float, dy: float) -> np.ndarray:
    return np.array([[1, 0, dx], [0, 1, dy], [0, 0, 1]], float)


def _inverse(delta: np.ndarray) -> np.ndarray | None:
    """The inverse of an affine 3x3 (last row 0, 0, 1) in closed form (np.linalg.inv costs more than the rest of a
    small step), None when it is singular."""
    (a, b, tx), (c, d, ty) = delta[:2].tolist()
    det = a * d - b * c
    if not math.isfinite(det) or abs(det) < 1e-12:
        return None
    ia, ib, ic, id_ = d / det, -b / det, -c / det, a / det
    return np.array([[ia, ib, -(ia * tx + ib * ty)], [ic, id_, -(ic * tx + id_ * ty)], [0.0, 0.0, 1.0]])


def _zncc(a: np.ndarray, b: np.ndarray) -> float:
    a = a - a.mean()
    b = b - b.mean()
    # einsum, not `@`: a threaded BLAS dot of one vector is slow when the cores are busy
    denom = math.sqrt(float(np.einsum("i,i->", a, a)) * float(np.einsum("i,i->", b, b)))
    return float(np.einsum("i,i->", a, b)) / denom if denom > 0 else 0.0


def _jacobian(model: MotionModel, gx: np.ndarray, gy: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Steepest-descent images (k, n): the gradient times the warp's Jacobian at identity, per parameter."""
    if model == "rigid":  # (tx, ty, angle)
        columns = [gx, gy, gy * x - gx * y]
    elif model == "similarity":  # (tx, ty, a, b) of [[1 + a, -b], [b, 1 + a]]
        columns = [gx, gy, gx * x + gy * y, gy * x - gx * y]
    else:  # (tx, ty, a, b, c, d) of [[1 + a, b], [c, 1 + d]]
        columns = [gx, gy, gx * x, gx * y, gy * x, gy * y]
    return np.stack(columns).astype(np.float32)


def _delta(model: MotionModel, p: np.ndarray) -> np.ndarray:
    """The 3x3 warp of an update `p`."""
    if model == "rigid":
        tx, ty, angle = p
        c, s = math.cos(angle), math.sin(angle)
        return np.array([[c, -s, tx], [s, c, ty], [0, 0, 1]])
    if model == "similarity":
        tx, ty, a, b = p
        return np.array([[1 + a, -b, tx], [b, 1 + a, ty], [0, 0, 1]])
    tx, ty, a, b, c, d = p
    return np.array([[1 + a, b, tx], [c, 1 + d, ty], [0, 0, 1]])


def _damping(hessian: np.ndarray, radius: float) -> np.ndarray:
    """A small ridge on the Hessian's diagonal (Levenberg-Marquardt style), in each parameter's units: a motion
    the reference cannot show (a part made of parallel stripes cannot show a shift along them) then stays where it
    started instead of drifting on noise. It slows the steps a little; it does not move the converged answer."""
    translation = float(hessian[0, 0] + hessian[1, 1]) / 2
    ridge = np.full(len(hessian), _DAMPING * translation)
    ridge[2:] *= radius**2  # the other parameters move a point by (parameter x distance from the centre)
    return ridge


def _motion(warp: np.ndarray) -> Motion:
    (a, b, tx), (c, d, ty) = warp[:2].tolist()
    # the singular values of [[a, b], [c, d]] in closed form: q + r and |q - r|
    q, r = math.hypot(a + d, c - b) / 2, math.hypot(a - d, c + b) / 2
    low, high = abs(q - r), q + r
    angle = math.degrees(math.atan2(c - b, a + d))
    return Motion(tx, ty, angle, (low + high) / 2, (low, high))


class Registrar:
    """Registers frames to one reference image (see the module docstring). Thread-safe: `register` only reads.

    reference: the golden part, BGR or grey uint8. model: the motion model ("rigid", "similarity", "affine").
    limits: acceptance criteria. Raises ValueError when the reference has too little texture to register
    anything against, or for an unknown model.
    """

    def __init__(self, reference: np.ndarray, *, model: MotionModel = "rigid", limits: Limits | None = None) -> None:
        if model not in MOTION_MODELS:
            raise ValueError(f"motion model must be one of {MOTION_MODELS}, got {model!r}")
        self.reference = grey(reference)
        self.shape: tuple[int, int] = (int(self.reference.shape[0]), int(self.reference.shape[1]))
        self.model: MotionModel = model
        self.limits = limits or Limits()
        pyramid = _pyramid(self.reference)
        (half, self._band), (quarter, _) = (
            self._level(img, factor, most, least)
            for img, factor, most, least in zip(pyramid, (2.0, 4.0), MAX_POINTS, _MIN_TEXTURE, strict=True)
        )
        self._levels = [half, quarter]
        self._half = pyramid[0]
        # constants of the conversions each frame needs: the half level's and the quarter's centred coordinates to
        # the frame's pixels and back, and the frame's centre (for the motion's shift and angle)
        self._half_to_frame = _to_full(half)
        self._frame_to_half = np.linalg.inv(self._half_to_frame)
        self._quarter_into_half = self._frame_to_half @ _to_full(quarter)
        self._frame_to_quarter = np.linalg.inv(_to_full(quarter))
        self._centre = _shift((self.shape[1] - 1) / 2, (self.shape[0] - 1) / 2)
        self._uncentre = np.linalg.inv(self._centre)
        self._window = cv2.createHanningWindow((self._half.shape[1], self._half.shape[0]), cv2.CV_32F)

    def _level(self, image: np.ndarray, factor: float, most: int, least: int) -> tuple[_Level, _Band]:
        """One level of the reference, and every textured pixel of it (the half level's is the correlation band)."""
        h, w = image.shape
        cx, cy = (w - 1) / 2, (h - 1) / 2
        gx = cv2.Sobel(image, cv2.CV_32F, 1, 0, ksize=3, scale=1 / 8)
        gy = cv2.Sobel(image, cv2.CV_32F, 0, 1, ksize=3, scale=1 / 8)
        magnitude = np.hypot(gx, gy)
        magnitude[:2], magnitude[-2:], magnitude[:, :2], magnitude[:, -2:] = 0, 0, 0, 0  # Sobel's border
        ys, xs = np.nonzero(magnitude > max(0.05 * float(magnitude.max()), 1e-3))
        if len(xs) < least:
            raise ValueError(
                f"the reference ({self.shape[1]}x{self.shape[0]}) has too little texture to register against "
                f"({len(xs)} textured pixels at 1/{int(factor)} scale)"
            )
        every = _Band.of(_Points.of(xs.astype(np.float32) - cx, ys.astype(np.float32) - cy), image[ys, xs])
        if len(xs) > most:  # keep the strongest: they carry most of the information
            keep = np.argpartition(magnitude[ys, xs], -most)[-most:]
            ys, xs = ys[keep], xs[keep]
        points = _Points.of(xs.astype(np.float32) - cx, ys.astype(np.float32) - cy)
        values = image[ys, xs]
        std = float(values.std()) or 1.0
        sd = _jacobian(self.model, gx[ys, xs] / std, gy[ys, xs] / std, points.x, points.y)
        sd64 = sd.astype(np.float64)
        hessian = np.einsum("kn,ln->kl", sd64, sd64)
        hessian += np.diag(_damping(hessian, points.radius))
        normalised = ((values - values.mean()) / std).astype(np.float32)
        return _Level(
            factor=factor,
            least=least,
            centre=(cx, cy),
            points=points,
            values=normalised,
            sd=sd,
            sd_values=sd64 @ normalised.astype(np.float64),
            hessian=hessian,
            hessian_inv=np.linalg.inv(hessian),
        ), every

    # ---------------------------------------------------------------------------------------------- register
    def register(self, frame: np.ndarray) -> Registered | Unregistered:
        """Register `frame` (BGR or grey uint8, the reference's size) to the reference; see the module docstring."""
        start = time.perf_counter()
        image = grey(frame)
        if image.shape != self.shape:
            return Unregistered(
                "size",
                f"frame {image.shape[1]}x{image.shape[0]} is not the reference's {self.shape[1]}x{self.shape[0]}",
                _ms(start),
            )
        pyramid = _pyramid(image)
        best = self._from(pyramid, (0.0, 0.0), start)
        if best.ok:
            return self._finish(best, image, start)
        shift = self._phase_shift(pyramid[0])
        if shift is not None and math.hypot(*shift) >= 0.5:  # a start the first one did not cover
            second = self._from(pyramid, shift, start)
            if second.ok:
                return self._finish(second, image, start)
            if (second.correlation or -1.0) > (best.correlation or -1.0):
                best = second
        return Unregistered(best.reason, best.detail, _ms(start), best.correlation, best.motion)

    def _phase_shift(self, half: np.ndarray) -> tuple[float, float] | None:
        """The frame's shift against the reference at the half level (phase correlation), None when unsure."""
        (dx, dy), response = cv2.phaseCorrelate(self._half, half, self._window)
        return (dx, dy) if response > 0.02 and np.isfinite([dx, dy]).all() else None

    def _from(self, pyramid: list[np.ndarray], shift: tuple[float, float], start: float) -> _Candidate | Unregistered:
        """Quarter then half level from a shift of the half level; the candidate or why it failed."""
        limits = self.limits
        half, quarter = self._levels
        warp = self._track(pyramid[1], quarter, _shift(shift[0] / 2, shift[1] / 2), _ITERATIONS[0])
        if warp is not None:
            in_half = self._quarter_into_half @ warp @ self._frame_to_quarter @ self._half_to_frame
            warp = self._track(pyramid[0], half, in_half, _ITERATIONS[1])
        if warp is None:
            return Unregistered("diverged", "the motion estimate left the frame", _ms(start))
        correlation = self._band.correlation(pyramid[0], warp, half.centre)
        full = self._half_to_frame @ warp @ self._frame_to_half  # frame pixels
        motion = _motion(self._uncentre @ full @ self._centre)
        if correlation < limits.min_correlation:
            why = f"correlation {correlation:.3f} < {limits.min_correlation} after registration"
            return Unregistered("low-correlation", why, _ms(start), correlation, motion)
        low, high = motion.scale_range
        if (
            math.hypot(motion.dx, motion.dy) > limits.max_shift_px
            or abs(motion.angle_deg) > limits.max_angle_deg
            or max(abs(low - 1), abs(high - 1)) > limits.max_scale_change + 1e-9
        ):
            why = (
                f"motion {motion.to_dict()} (scales {low:.4f}-{high:.4f}) beyond the limits (shift "
                f"{limits.max_shift_px} px, angle {limits.max_angle_deg} deg, scale +-{limits.max_scale_change})"
            )
            return Unregistered("motion-limit", why, _ms(start), correlation, motion)
        return _Candidate(full, motion, correlation)

    def _track(self, frame: np.ndarray, level: _Level, warp: np.ndarray, iterations: int) -> np.ndarray | None:
        """Inverse-compositional Lucas-Kanade at one level; `warp` (3x3, centred coordinates of this level)
        is refined and returned, None when it left the frame."""
        step_done = _STEP_DONE_PX / level.factor
        points, n = level.points, level.points.n
        for _ in range(iterations):
            where = points.where(warp, level.centre)
            values = _sample(frame, where, n)
            if points.all_inside(warp, level.centre, frame.shape):
                # the precomputed Hessian holds: sd @ ((values - mean) / std - target) = sd @ (values - mean) / std
                # - sd @ target, the last term a constant of the level
                centred = values - np.float32(values.mean())
                std = math.sqrt(float(np.einsum("i,i->", centred, centred)) / n)
                if std == 0:
                    return None
                dp = level.hessian_inv @ ((level.sd @ centred).astype(np.float64) / std - level.sd_values)
            else:  # points that left the frame drop out: the Hessian of those that stay (few leave)
                inside = points.inside(where, frame.shape)
                if int(inside.sum()) < level.least:
                    return None
                kept = values[inside]
                std = float(kept.std())
                if std == 0:
                    return None
                error = np.zeros(n, np.float32)  # the points that left add nothing
                error[inside] = (kept - kept.mean()) / std - level.values[inside]  # gain and offset matched
                gone = level.sd[:, ~inside].astype(np.float64)
                dp = np.linalg.lstsq(level.hessian - gone @ gone.T, (level.sd @ error).astype(np.float64))[0]
            delta = _delta(self.model, dp)
            inverse = _inverse(delta)
            if inverse is None:
                return None
            warp = warp @ inverse
            if not np.isfinite(warp).all():
                return None
            (a, b, _), (c, d, _) = delta[:2].tolist()
            moved = math.hypot(dp[0], dp[1]) + (abs(a - 1) + abs(b) + abs(c) + abs(d - 1)) * points.radius
            if moved < step_done:
                break
        return warp

    def _finish(self, candidate: _Candidate, frame: np.ndarray, start: float) -> Registered:
        """The accepted warp, and the reference resampled onto the frame's grid."""
        warp = candidate.warp[:2]
        h, w = self.shape
        resampled = cv2.warpAffine(
            self.reference, warp, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
        )
        return Registered(warp, resampled, candidate.motion, candidate.correlation, _ms(start), frame)


def _ms(start: float) -> float:
    return (time.perf_counter() - start) * 1e3


def register(
    frame: np.ndarray, reference: np.ndarray, *, model: MotionModel = "rigid", limits: Limits | None = None
) -> Registered | Unregistered:
    """One-off registration of `frame` to `reference` (builds a `Registrar`; keep one per reference instead when
    registering many frames). Raises ValueError when the reference has too little texture."""
    return Registrar(reference, model=model, limits=limits).register(frame)
