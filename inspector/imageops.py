"""Image conversions shared by the sources and the detector (one copy of each)."""

from __future__ import annotations

import cv2
import numpy as np

__all__ = ["as_bgr"]


def as_bgr(image: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 BGR from a BGR, grey ((H, W) or (H, W, 1)) or BGRA uint8 image; a BGR image is returned as
    it is (no copy). Raises TypeError / ValueError for anything else, naming what it got."""
    if not isinstance(image, np.ndarray):
        raise TypeError(f"image must be a numpy array, not {type(image).__name__}")
    if image.dtype != np.uint8:
        raise ValueError(f"image must be uint8 (8-bit), got {image.dtype}")
    if image.ndim == 3 and image.shape[2] == 3:
        return image
    if image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 1):
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    raise ValueError(f"image must be HxWx3 BGR, HxW / HxWx1 grey or HxWx4 BGRA, got shape {image.shape}")
