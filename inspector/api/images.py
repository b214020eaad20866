"""Reject images for the dashboard: boxes and class names drawn on a stored image, scaled and JPEG-encoded."""

from __future__ import annotations

from collections.abc import Mapping

import cv2
import numpy as np

from inspector.store import StoredDetection

__all__ = ["annotate", "jpeg"]


_DEFECT_BGR = (40, 40, 230)  # red: a defect of a class without a colour


def _bgr(colour: str) -> tuple[int, int, int]:
    """#rrggbb as OpenCV's (b, g, r)."""
    r, g, b = (int(colour[i : i + 2], 16) for i in (1, 3, 5))
    return b, g, r


def annotate(
    image: np.ndarray, detections: list[StoredDetection], colours: Mapping[str, str] | None = None
) -> np.ndarray:
    """Draw the boxes on a copy of `image`: defects (kept) thick, in their class's colour (`colours`: class name ->
    #rrggbb, the recipe's; red without one) with class and score; others thin grey."""
    colours = colours or {}
    out = image.copy()
    scale = max(out.shape[:2]) / 640.0
    thick = max(1, round(2 * scale))
    font = max(0.4, 0.5 * scale)
    for d in sorted(detections, key=lambda d: d.kept):  # defects drawn last, on top
        x1, y1, x2, y2 = (round(v) for v in d.xyxy)
        own = colours.get(d.class_name)
        color = (_bgr(own) if own else _DEFECT_BGR) if d.kept else (170, 170, 170)
        cv2.rectangle(out, (x1, y1), (x2, y2), color, thick if d.kept else 1)
        if d.kept:
            label = f"{d.class_name} {d.confidence:.2f}"
            (tw, th), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, font, 1)
            ty = y1 - 4 if y1 - th - base - 4 >= 0 else y2 + th + 4
            cv2.rectangle(out, (x1, ty - th - 3), (x1 + tw + 4, ty + base - 1), color, -1)
            cv2.putText(out, label, (x1 + 2, ty - 1), cv2.FONT_HERSHEY_SIMPLEX, font, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def jpeg(image: np.ndarray, *, width: int | None = None, quality: int = 85) -> bytes | None:
    """`image` as JPEG bytes, scaled down to `width` when it is wider; None when it cannot be encoded."""
    if width is not None and width < image.shape[1]:
        height = max(1, round(image.shape[0] * width / image.shape[1]))
        image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    return buf.tobytes() if ok else None
