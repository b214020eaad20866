"""The pure decision: detections plus thresholds give a verdict. No I/O, no clock, no state."""

from __future__ import annotations

import cv2
import numpy as np

from inspector.types import Decision, Detections, Thresholds, Verdict

__all__ = ["decide", "kept_mask", "roi_mask"]


def roi_mask(detections: Detections, roi: list[tuple[float, float]] | None) -> np.ndarray:
    """(n,) bool: True where the box centre lies inside (or on the edge of) the polygon; all True without one."""
    if roi is None or len(detections) == 0:
        return np.ones(len(detections), dtype=bool)
    # Clipped first: OpenCV needs float32, and a coordinate beyond its range would overflow to inf.
    polygon = np.clip(np.asarray(roi, dtype=np.float64), -1e9, 1e9).astype(np.float32).reshape(-1, 1, 2)
    return np.array(
        [cv2.pointPolygonTest(polygon, (float(x), float(y)), False) >= 0 for x, y in detections.center],
        dtype=bool,
    )


def kept_mask(detections: Detections, thresholds: Thresholds, names: dict[int, str]) -> np.ndarray:
    """(n,) bool: detections that count as defects under `thresholds` (confidence, area, ROI, enabled)."""
    n = len(detections)
    if n == 0:
        return np.zeros(0, dtype=bool)
    min_conf = np.empty(n, np.float64)
    min_area = np.empty(n, np.float64)  # float64: a huge configured area must not overflow
    enabled = np.empty(n, bool)
    for i, cid in enumerate(detections.class_id):
        rule = thresholds.for_class(names.get(int(cid), str(int(cid))))
        min_conf[i], min_area[i], enabled[i] = rule.min_confidence, rule.min_area_px, rule.enabled
    return (
        enabled
        & (detections.confidence >= min_conf)
        & (detections.area >= min_area)
        & roi_mask(detections, thresholds.roi)
    )


def decide(
    detections: Detections,
    thresholds: Thresholds,
    names: dict[int, str] | None = None,
    part_id: int = 0,
) -> Verdict:
    """Decide one part.

    A class rejects the part when its kept defects number more than its `max_count` (0 by default, so any kept
    defect rejects). `reasons` lists the rejecting class names, most confident first; the verdict carries `names`.
    """
    names = names or {}
    kept = kept_mask(detections, thresholds, names)
    reasons: list[str] = []
    if kept.any():
        kept_dets = detections[kept]
        order = np.argsort(-kept_dets.confidence, kind="stable")
        counts: dict[str, int] = {}
        for cid in kept_dets.class_id[order]:
            name = names.get(int(cid), str(int(cid)))
            counts[name] = counts.get(name, 0) + 1
        reasons = [name for name, count in counts.items() if count > thresholds.for_class(name).max_count]
    return Verdict(
        part_id=part_id,
        decision=Decision.REJECT if reasons else Decision.PASS,
        reasons=reasons,
        detections=detections,
        kept=kept,
        thresholds_version=thresholds.version,
        names=names,
    )
