"""Accuracy of a detector and of its decisions in plain numpy (no torch, no Ultralytics): runtime-safe.

Conventions
- Boxes are `xyxy` corners in pixels, (n, 4); classes are 0-based ints; confidences are in [0, 1].
- Matching (`match_predictions`): predictions are taken in descending confidence; each one claims the not yet
  claimed ground-truth box *of its own class* with the highest IoU, and is a true positive at an IoU threshold `t`
  when that IoU is `>= t` (COCO / Ultralytics) or `> t` (`strict=True`, the DeepPCB protocol's "over 0.33").
  This is Ultralytics' `DetectionValidator.match_predictions` (greedy, non-Hungarian), done per threshold.
- AP (`compute_ap`): **Ultralytics' interpolation**: the precision envelope (monotone non-increasing) is sampled
  at 101 recall points by linear interpolation and integrated with the trapezoid rule. This reproduces
  `yolo val`'s figures; pycocotools (COCO's own 101-point step sampling averaged) differs by a fraction of a
  point. mAP is the mean over classes that have at least one ground-truth box (a class with labels but no
  prediction counts 0), as in Ultralytics.
- mAP@0.5:0.95 averages AP over the 10 IoU thresholds 0.50, 0.55, ..., 0.95.
- DeepPCB protocol (Tang et al. 2019): a detection is correct when its class matches and IoU > 0.33.
  Its "mAP" here is the same per-class AP at that criterion (with the interpolation above), and its F-score
  2PR/(P+R) is counted over all detections kept at the deployed thresholds, pooled over classes (micro average).
- Inspection rates are per image (per part): an *escape* is a defective image (at least one ground-truth box)
  that the decision passes; a *false reject* is a defect-free image that the decision rejects.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "COCO_IOU_THRESHOLDS",
    "DEEPPCB_IOU",
    "PRF",
    "APResult",
    "DetectionAccumulator",
    "ap_per_class",
    "box_iou",
    "compute_ap",
    "f1_best_thresholds",
    "inspection_rates",
    "match_predictions",
    "precision_recall_f1",
    "rejected",
]

COCO_IOU_THRESHOLDS: np.ndarray = np.linspace(0.5, 0.95, 10)  # (10,)
DEEPPCB_IOU = 0.33  # correct when IoU is strictly greater than this (and the class matches)
_AP_X = np.linspace(0.0, 1.0, 101)  # recall sample points of the 101-point interpolation


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU. a: (n, 4) xyxy, b: (m, 4) xyxy, pixels. Returns (n, m) float64 in [0, 1].

    Degenerate (zero-area) boxes give IoU 0 with everything, never NaN.
    """
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = np.clip(rb - lt, 0.0, None)
    inter = wh[..., 0] * wh[..., 1]
    area_a = np.prod(np.clip(a[:, 2:] - a[:, :2], 0.0, None), axis=1)
    area_b = np.prod(np.clip(b[:, 2:] - b[:, :2], 0.0, None), axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)
    return iou


def match_predictions(
    pred_xyxy: np.ndarray,
    pred_cls: np.ndarray,
    pred_conf: np.ndarray,
    gt_xyxy: np.ndarray,
    gt_cls: np.ndarray,
    iou_thresholds: np.ndarray | float = COCO_IOU_THRESHOLDS,
    *,
    strict: bool = False,
) -> np.ndarray:
    """Mark each prediction of one image correct or not at each IoU threshold.

    pred_xyxy (n, 4), pred_cls (n,), pred_conf (n,); gt_xyxy (m, 4), gt_cls (m,); iou_thresholds (t,) or a scalar.
    Returns (n, t) bool in the predictions' own order (they need not be sorted). Ties in confidence keep the given
    order (stable sort). See the module docstring for the rule.
    """
    thresholds = np.atleast_1d(np.asarray(iou_thresholds, dtype=np.float64))
    n, m = len(pred_cls), len(gt_cls)
    correct = np.zeros((n, len(thresholds)), dtype=bool)
    if n == 0 or m == 0:
        return correct
    order = np.argsort(-np.asarray(pred_conf, dtype=np.float64), kind="stable")
    iou = box_iou(gt_xyxy, np.asarray(pred_xyxy)[order])  # (m, n)
    iou *= np.asarray(gt_cls)[:, None] == np.asarray(pred_cls)[order][None, :]  # wrong class: IoU 0
    claimed = np.zeros((m, len(thresholds)), dtype=bool)
    cols = np.arange(len(thresholds))
    for j in range(n):
        available = np.where(claimed, 0.0, iou[:, j, None])  # (m, t)
        k = available.argmax(0)  # best unclaimed target per threshold
        best = available[k, cols]
        hit = (best > thresholds) if strict else (best >= thresholds)
        hit &= best > 0  # IoU 0 (no overlap, or the wrong class) never matches, even at threshold 0
        correct[order[j]] = hit
        claimed[k[hit], cols[hit]] = True
    return correct


def compute_ap(recall: np.ndarray, precision: np.ndarray) -> float:
    """AP from one PR curve (points in descending-confidence order), Ultralytics' 101-point interpolation.

    recall, precision: (k,) in [0, 1]. Returns AP in [0, 1]; an empty curve gives 0.
    """
    recall = np.asarray(recall, dtype=np.float64)
    precision = np.asarray(precision, dtype=np.float64)
    if recall.size == 0:
        return 0.0
    # Sentinels: start at (recall 0, precision 1); after the last point precision drops to 0.
    mrec = np.concatenate(([0.0], recall, [recall[-1]], [1.0]))
    mpre = np.concatenate(([1.0], precision, [0.0], [0.0]))
    mpre = np.flip(np.maximum.accumulate(np.flip(mpre)))  # precision envelope
    y = np.interp(_AP_X, mrec, mpre)
    return float(np.sum((y[1:] + y[:-1]) * np.diff(_AP_X)) / 2.0)  # trapezoid rule


@dataclass(slots=True)
class APResult:
    """Per-class AP at each IoU threshold.

    ap: (nc, t) float64, NaN for a class with no ground-truth box (it takes no part in the mean).
    n_labels: (nc,) ground-truth boxes per class; n_preds: (nc,) predictions per class.
    """

    ap: np.ndarray
    n_labels: np.ndarray
    n_preds: np.ndarray

    def mean(self, column: int | slice = 0) -> float:
        """mAP over the classes with labels: AP at threshold `column`, or averaged over a slice of thresholds."""
        values = self.ap[:, column]
        if values.ndim == 2:
            values = values.mean(axis=1)
        values = values[self.n_labels > 0]
        return float(values.mean()) if values.size else 0.0


def ap_per_class(tp: np.ndarray, conf: np.ndarray, pred_cls: np.ndarray, target_cls: np.ndarray, nc: int) -> APResult:
    """AP per class over a whole data set.

    tp: (N, t) bool, `match_predictions` of all images concatenated; conf (N,), pred_cls (N,): the predictions;
    target_cls (M,): classes of all ground-truth boxes; nc: number of classes (ids 0..nc-1).
    """
    tp = np.asarray(tp, dtype=bool).reshape(len(conf), -1)
    conf = np.asarray(conf, dtype=np.float64)
    pred_cls = np.asarray(pred_cls, dtype=np.int64)
    target_cls = np.asarray(target_cls, dtype=np.int64)
    order = np.argsort(-conf, kind="stable")
    tp, pred_cls = tp[order], pred_cls[order]
    n_labels = np.bincount(target_cls, minlength=nc)[:nc]
    n_preds = np.bincount(pred_cls, minlength=nc)[:nc]
    ap = np.full((nc, tp.shape[1]), np.nan)
    for c in range(nc):
        if n_labels[c] == 0:
            continue  # NaN: nothing to find, so no AP (false positives of this class are not scored)
        hits = tp[pred_cls == c]
        if hits.shape[0] == 0:
            ap[c] = 0.0
            continue
        tpc = hits.cumsum(0)
        fpc = (~hits).cumsum(0)
        recall = tpc / n_labels[c]
        precision = tpc / (tpc + fpc)
        ap[c] = [compute_ap(recall[:, j], precision[:, j]) for j in range(tp.shape[1])]
    return APResult(ap=ap, n_labels=n_labels, n_preds=n_preds)


@dataclass(slots=True)
class PRF:
    """Counts and rates at one operating point. Rates are 0 (not NaN) when their denominator is 0."""

    tp: int
    n_pred: int
    n_gt: int

    @property
    def precision(self) -> float:
        return self.tp / self.n_pred if self.n_pred else 0.0

    @property
    def recall(self) -> float:
        return self.tp / self.n_gt if self.n_gt else 0.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r > 0 else 0.0


def precision_recall_f1(tp: np.ndarray, pred_cls: np.ndarray, target_cls: np.ndarray, nc: int) -> tuple[PRF, list[PRF]]:
    """Precision, recall and F-score of a set of kept detections, pooled and per class.

    tp: (N,) bool, one IoU criterion's column of `match_predictions` for the detections kept at the operating
    thresholds; pred_cls (N,); target_cls (M,) all ground-truth classes. Returns (pooled, [per class]).
    """
    tp = np.asarray(tp, dtype=bool).reshape(-1)
    pred_cls = np.asarray(pred_cls, dtype=np.int64)
    target_cls = np.asarray(target_cls, dtype=np.int64)
    per_class = [
        PRF(int(tp[pred_cls == c].sum()), int((pred_cls == c).sum()), int((target_cls == c).sum())) for c in range(nc)
    ]
    return PRF(int(tp.sum()), len(tp), len(target_cls)), per_class


def f1_best_thresholds(
    tp: np.ndarray, conf: np.ndarray, pred_cls: np.ndarray, target_cls: np.ndarray, nc: int, floor: float
) -> np.ndarray:
    """Per class, the confidence threshold (>= floor) at which that class's box F-score peaks.

    tp: (N,) bool, one IoU criterion's column of `match_predictions` for every detection of a split (at a low
    score floor); conf (N,); pred_cls (N,); target_cls (M,) all ground-truth classes. Matching is greedy in
    descending confidence within a class, so dropping a class's weaker detections never changes whether its
    stronger ones are correct: F at every threshold follows from one sort. Returns (nc,) thresholds, each halfway
    between the weakest detection kept at the peak and the next weaker one (never on an observed score), or
    `floor` for a class whose F-score peaks with every detection above the floor kept, or that has no detection.
    """
    tp = np.asarray(tp, dtype=bool).reshape(-1)
    conf = np.asarray(conf, dtype=np.float64).reshape(-1)
    pred_cls = np.asarray(pred_cls, dtype=np.int64).reshape(-1)
    target_cls = np.asarray(target_cls, dtype=np.int64).reshape(-1)
    out = np.full(nc, float(floor))
    for c in range(nc):
        mine = (pred_cls == c) & (conf >= floor)
        n_gt = int((target_cls == c).sum())
        if not mine.any() or n_gt == 0:
            continue
        order = np.argsort(-conf[mine], kind="stable")
        scores, hits = conf[mine][order], np.cumsum(tp[mine][order])
        # Only cut between distinct scores: detections of equal score are kept or dropped together.
        last = np.flatnonzero(np.append(scores[1:] != scores[:-1], True))
        kept = last + 1
        f1 = 2 * hits[last] / (kept + n_gt)  # 2PR / (P + R) = 2 TP / (kept + ground truth)
        k = int(last[int(np.argmax(f1))])  # the first (highest-threshold) peak: fewest boxes for the same F
        if k + 1 < len(scores):
            out[c] = max(float(floor), (scores[k] + scores[k + 1]) / 2)
    return out


def rejected(scores: np.ndarray, min_confidence: np.ndarray) -> np.ndarray:
    """Which images a per-class threshold rejects.

    scores: (n_images, nc): per image and class the confidence at which that class would reject the image
    (e.g. its most confident eligible detection; negative when it has none); min_confidence: (nc,) thresholds,
    or (k, nc) for k threshold sets at once. Returns (n_images,) bool, or (k, n_images).
    A class rejects when score >= threshold, as `inspector.decide` keeps confidence >= min_confidence.
    """
    scores = np.asarray(scores, dtype=np.float64)
    t = np.asarray(min_confidence, dtype=np.float64)
    if t.ndim == 1:
        return (scores >= t[None, :]).any(axis=1)
    return (scores[None, :, :] >= t[:, None, :]).any(axis=2)


def inspection_rates(
    defective_scores: np.ndarray, good_scores: np.ndarray, min_confidence: np.ndarray
) -> tuple[float, float]:
    """(escape rate, false-reject rate) at per-class thresholds.

    defective_scores: (n_def, nc) for images with at least one defect; good_scores: (n_good, nc) for defect-free
    images; min_confidence: (nc,). A rate whose image set is empty is 0.
    """
    escapes = ~rejected(defective_scores, min_confidence)
    false_rejects = rejected(good_scores, min_confidence)
    return (
        float(escapes.mean()) if escapes.size else 0.0,
        float(false_rejects.mean()) if false_rejects.size else 0.0,
    )


@dataclass
class DetectionAccumulator:
    """Collects per-image matches for a data set, then gives AP tables and operating-point counts.

    `add` once per image; `result` for mAP@0.5, mAP@0.5:0.95 and the DeepPCB AP (IoU > 0.33); `deeppcb_matches`
    for the pooled matches under the DeepPCB criterion.
    """

    nc: int
    tp_coco: list[np.ndarray] = field(default_factory=list)  # (n, 10) per image
    tp_deeppcb: list[np.ndarray] = field(default_factory=list)  # (n, 1) per image
    conf: list[np.ndarray] = field(default_factory=list)
    pred_cls: list[np.ndarray] = field(default_factory=list)
    target_cls: list[np.ndarray] = field(default_factory=list)

    def add(
        self,
        pred_xyxy: np.ndarray,
        pred_conf: np.ndarray,
        pred_cls: np.ndarray,
        gt_xyxy: np.ndarray,
        gt_cls: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Match one image's predictions (n, 4)/(n,)/(n,) to its ground truth (m, 4)/(m,).

        Returns (tp at the 10 COCO thresholds (n, 10), tp under the DeepPCB criterion (n,)).
        """
        pred_cls = np.asarray(pred_cls, dtype=np.int64).reshape(-1)
        pred_conf = np.asarray(pred_conf, dtype=np.float64).reshape(-1)
        gt_cls = np.asarray(gt_cls, dtype=np.int64).reshape(-1)
        coco = match_predictions(pred_xyxy, pred_cls, pred_conf, gt_xyxy, gt_cls, COCO_IOU_THRESHOLDS)
        deeppcb = match_predictions(pred_xyxy, pred_cls, pred_conf, gt_xyxy, gt_cls, DEEPPCB_IOU, strict=True)
        self.tp_coco.append(coco)
        self.tp_deeppcb.append(deeppcb)
        self.conf.append(pred_conf)
        self.pred_cls.append(pred_cls)
        self.target_cls.append(gt_cls)
        return coco, deeppcb[:, 0]

    def _cat(self, parts: list[np.ndarray], shape: tuple[int, ...], dtype: type) -> np.ndarray:
        return np.concatenate(parts) if parts else np.zeros(shape, dtype)

    def deeppcb_matches(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Every detection added so far, pooled: (DeepPCB-criterion tp (N,) bool, conf (N,), pred_cls (N,)) and
        all ground-truth classes (M,), as `precision_recall_f1` and `f1_best_thresholds` take them."""
        return (
            self._cat(self.tp_deeppcb, (0, 1), bool)[:, 0],
            self._cat(self.conf, (0,), np.float64),
            self._cat(self.pred_cls, (0,), np.int64),
            self._cat(self.target_cls, (0,), np.int64),
        )

    def result(self) -> tuple[APResult, APResult]:
        """(COCO-threshold APs (nc, 10), DeepPCB APs (nc, 1))."""
        conf = self._cat(self.conf, (0,), np.float64)
        pred_cls = self._cat(self.pred_cls, (0,), np.int64)
        target_cls = self._cat(self.target_cls, (0,), np.int64)
        coco = ap_per_class(self._cat(self.tp_coco, (0, 10), bool), conf, pred_cls, target_cls, self.nc)
        deeppcb = ap_per_class(self._cat(self.tp_deeppcb, (0, 1), bool), conf, pred_cls, target_cls, self.nc)
        return coco, deeppcb
