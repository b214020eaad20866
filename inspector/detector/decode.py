"""Raw network output -> boxes: the three output layouts, the confidence filter and class-aware NMS.

Layouts: "v8" `[4 + nc, N]`, "v5" `[N, 5 + nc]` (score = objectness * class score), "e2e" `[N, 6]` (already
de-duplicated: only the confidence filter and `max_det` apply). NMS has torchvision's semantics and Ultralytics'
per-class offset, in float32, so the kept boxes match Ultralytics bit for bit.
"""

from __future__ import annotations

import numpy as np

__all__ = ["LAYOUTS", "MAX_NMS", "MAX_WH", "decode", "nms"]

LAYOUTS = ("v8", "v5", "e2e")
MAX_WH = 7680  # Ultralytics' per-class box offset for class-aware NMS in one pass
MAX_NMS = 30000  # Ultralytics keeps at most this many candidates (highest scores) before NMS


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy NMS with torchvision's semantics; returns kept indices, highest score first.

    boxes: (n, 4) float32 xyxy; scores: (n,) float32. Ties in score keep their input order (stable sort, as
    torchvision); a box is suppressed when its IoU with a kept box is strictly greater than `iou_threshold`.
    """
    n = boxes.shape[0]
    if n == 0:
        return np.zeros(0, np.int64)
    order = np.argsort(-scores, kind="stable")
    x1, y1, x2, y2 = (boxes[:, k] for k in range(4))
    areas = (x2 - x1) * (y2 - y1)
    keep: list[int] = []
    while order.size:
        i = order[0]
        keep.append(int(i))
        if order.size == 1:
            break
        rest = order[1:]
        w = np.maximum(np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]), np.float32(0))
        h = np.maximum(np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]), np.float32(0))
        inter = w * h
        iou = inter / (areas[i] + areas[rest] - inter)
        order = rest[~(iou > iou_threshold)]  # NaN (two empty boxes) keeps the box, like torchvision
    return np.asarray(keep, np.int64)


def decode(
    pred: np.ndarray, layout: str, conf: float, iou: float, max_det: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One image's raw output -> (xyxy (k, 4) float32 in input pixels, score (k,), class (k,) int64)."""
    if layout == "e2e":  # (N, 6): already de-duplicated and sorted by score
        keep = np.flatnonzero(pred[:, 4] > conf)[:max_det]
        sel = pred[keep]
        return sel[:, :4], sel[:, 4], sel[:, 5].astype(np.int64)
    if layout == "v8":  # (4 + nc, N)
        scores_all = pred[4:]
        best = scores_all.max(axis=0)
        idx = np.flatnonzero(best > conf)
        if idx.size == 0:
            return np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64)
        cls = scores_all[:, idx].argmax(axis=0)
        score = best[idx]
        xywh = pred[:4, idx].T
    else:  # "v5": (N, 5 + nc); objectness gates first, then score = obj * class score (YOLOv5's NMS)
        cand = pred[pred[:, 4] > conf]
        cls_scores = cand[:, 5:] * cand[:, 4:5]
        cls = cls_scores.argmax(axis=1)
        score = cls_scores[np.arange(cls.size), cls]
        ok = score > conf
        cls, score, xywh = cls[ok], score[ok], cand[ok, :4]
        if score.size == 0:
            return np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64)
    xyxy = np.empty_like(xywh)
    half = xywh[:, 2:4] / 2
    xyxy[:, 0:2] = xywh[:, 0:2] - half
    xyxy[:, 2:4] = xywh[:, 0:2] + half
    if score.size > MAX_NMS:
        top = np.argsort(-score, kind="stable")[:MAX_NMS]
        xyxy, score, cls = xyxy[top], score[top], cls[top]
    # Shift each class by MAX_WH px so one pass of NMS never compares two classes (Ultralytics does the same,
    # in float32, so the IoUs and hence the kept boxes match it bit for bit).
    offset = (cls.astype(np.float32) * np.float32(MAX_WH))[:, None]
    keep = nms(xyxy + offset, score, iou)[:max_det]
    return xyxy[keep], score[keep], cls[keep].astype(np.int64)
