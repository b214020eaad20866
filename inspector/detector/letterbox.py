"""Letterbox geometry, identical to Ultralytics': where an image lands in the network input and how boxes go back.

`letterbox_params` and `rect_shape` are Ultralytics' `LetterBox` (centred, scale-up allowed; `auto=True` for the
stride-padded size); `scale_boxes` is its `scale_boxes` (remove the pad, divide by the gain per axis, clip).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from inspector.types import Detections

__all__ = ["PAD_VALUE", "LetterboxParams", "letterbox_params", "rect_shape", "scale_boxes"]

PAD_VALUE = 114  # Ultralytics' letterbox grey


@dataclass(frozen=True, slots=True)
class LetterboxParams:
    """How one image maps into the network input.

    new_unpad: (w, h) of the resized image inside the input; left/top: padding before it, in input pixels;
    gain_x/gain_y: resized / original size per axis (what Ultralytics' `scale_boxes` divides by).
    """

    new_unpad: tuple[int, int]
    left: int
    top: int
    gain_x: float
    gain_y: float


def letterbox_params(shape: tuple[int, int], new_shape: tuple[int, int]) -> LetterboxParams:
    """Ultralytics `LetterBox.get_params` (centred, scale-up allowed) plus `scale_boxes`' gains.

    shape: original (h, w); new_shape: network input (h, w). Rounding follows Ultralytics exactly, including the
    "- 0.1" that puts the odd padding pixel on the bottom/right.
    """
    h, w = shape
    r = min(new_shape[0] / h, new_shape[1] / w)
    new_w, new_h = max(round(w * r), 1), max(round(h * r), 1)
    dw, dh = (new_shape[1] - new_w) / 2, (new_shape[0] - new_h) / 2
    return LetterboxParams((new_w, new_h), round(dw - 0.1), round(dh - 0.1), new_w / w, new_h / h)


def rect_shape(shape: tuple[int, int], imgsz: tuple[int, int], stride: int) -> tuple[int, int]:
    """Ultralytics' `LetterBox(auto=True)` input size: the resized image padded up to a multiple of `stride`.

    shape: original (h, w); imgsz: (h, w) bound; returns the (h, w) network input.
    """
    h, w = shape
    r = min(imgsz[0] / h, imgsz[1] / w)
    new_w, new_h = max(round(w * r), 1), max(round(h * r), 1)
    return new_h + (imgsz[0] - new_h) % stride, new_w + (imgsz[1] - new_w) % stride


def scale_boxes(
    xyxy: np.ndarray, score: np.ndarray, cls: np.ndarray, p: LetterboxParams, shape: tuple[int, int]
) -> Detections:
    """Input-pixel boxes -> original-image pixels (Ultralytics `scale_boxes`: remove pad, divide by the gain per
    axis, clip to the image)."""
    boxes = xyxy.astype(np.float32, copy=True)
    boxes[:, [0, 2]] = (boxes[:, [0, 2]] - np.float32(p.left)) / np.float32(p.gain_x)
    boxes[:, [1, 3]] = (boxes[:, [1, 3]] - np.float32(p.top)) / np.float32(p.gain_y)
    h, w = shape
    boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, w)
    boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, h)
    return Detections(boxes, score.astype(np.float32), cls)
