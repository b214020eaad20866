"""Metrics checked against cases computed by hand (see each test's comments for the arithmetic)."""

from __future__ import annotations

import numpy as np
import pytest

from inspector.accuracy import (
    COCO_IOU_THRESHOLDS,
    DEEPPCB_IOU,
    DetectionAccumulator,
    ap_per_class,
    box_iou,
    compute_ap,
    f1_best_thresholds,
    inspection_rates,
    match_predictions,
    precision_recall_f1,
    rejected,
)


def test_box_iou_hand_values() -> None:
    a = np.array([[0, 0, 10, 10]], np.float32)
    b = np.array(
        [
            [5, 0, 15, 10],  # overlap 5x10 = 50, union 100 + 100 - 50 = 150 -> 1/3
            [0, 0, 10, 10],  # identical -> 1
            [20, 20, 30, 30],  # disjoint -> 0
            [0, 0, 10, 5],  # inside, half the area -> 0.5
            [3, 3, 3, 3],  # zero area -> 0, not NaN
        ],
        np.float32,
    )
    iou = box_iou(a, b)
    assert iou.shape == (1, 5)
    np.testing.assert_allclose(iou[0], [1 / 3, 1.0, 0.0, 0.5, 0.0], atol=1e-9)
    assert box_iou(np.zeros((0, 4)), b).shape == (0, 5)


def test_match_duplicates_wrong_class_and_partial_overlap() -> None:
    gt = np.array([[0, 0, 10, 10], [20, 0, 30, 10]], np.float32)
    gt_cls = np.array([0, 0])
    pred = np.array(
        [
            [20, 0, 30, 9],  # conf 0.6, class 0: IoU 90/100 = 0.9 with gt 1 -> TP up to 0.9, not at 0.95
            [0, 0, 10, 10],  # conf 0.9, class 0: exact on gt 0 -> TP everywhere
            [0, 0, 10, 10],  # conf 0.8, class 0: duplicate; gt 0 is claimed, gt 1 has IoU 0 -> FP
            [20, 0, 30, 9],  # conf 0.7, class 1: wrong class -> FP
        ],
        np.float32,
    )
    conf = np.array([0.6, 0.9, 0.8, 0.7])
    cls = np.array([0, 0, 0, 1])
    correct = match_predictions(pred, cls, conf, gt, gt_cls)
    assert correct.shape == (4, 10)
    assert correct[1].all()
    assert not correct[2].any() and not correct[3].any()
    np.testing.assert_array_equal(correct[0], [True] * 9 + [False])


def test_match_is_greedy_by_confidence_per_threshold() -> None:
    # One gt, area 100x10 = 1000. The confident prediction overlaps 620/1000 = 0.62, the other 960/1000 = 0.96.
    # At 0.50-0.60 the confident one claims the gt; from 0.65 on it cannot, so the gt is free for the other one.
    gt = np.array([[0, 0, 100, 10]], np.float32)
    pred = np.array([[0, 0, 62, 10], [0, 0, 96, 10]], np.float32)
    correct = match_predictions(pred, np.array([0, 0]), np.array([0.9, 0.5]), gt, np.array([0]))
    np.testing.assert_array_equal(correct[0], [True, True, True] + [False] * 7)
    np.testing.assert_array_equal(correct[1], [False, False, False] + [True] * 7)


def test_match_strict_threshold_for_deeppcb() -> None:
    gt = np.array([[0, 0, 10, 10]], np.float32)
    half = np.array([[0, 0, 10, 5]], np.float32)  # IoU exactly 0.5
    args = (half, np.array([0]), np.array([0.5]), gt, np.array([0]))
    assert match_predictions(*args, 0.5)[0, 0]
    assert not match_predictions(*args, 0.5, strict=True)[0, 0]
    third = np.array([[5, 0, 15, 10]], np.float32)  # IoU 1/3 = 0.333... > 0.33: correct under DeepPCB
    assert match_predictions(third, np.array([0]), np.array([0.5]), gt, np.array([0]), DEEPPCB_IOU, strict=True)[0, 0]
    # No ground truth, or no prediction: all false, right shapes.
    assert match_predictions(third, np.array([0]), np.array([0.5]), np.zeros((0, 4)), np.zeros(0)).shape == (1, 10)
    assert match_predictions(np.zeros((0, 4)), np.zeros(0), np.zeros(0), gt, np.array([0])).shape == (0, 10)


def test_compute_ap_hand_values() -> None:
    # Perfect: the envelope is 1 up to recall 1 and drops to 0 at the last of the 101 points:
    # 100 segments, the last one a trapezoid (1 + 0) / 2 * 0.01 -> 0.99 + 0.005 = 0.995 (Ultralytics' familiar cap).
    assert compute_ap(np.array([0.5, 1.0]), np.array([1.0, 1.0])) == pytest.approx(0.995)
    # 3 gt; ranked TP, FP, TP, TP: recall 1/3, 1/3, 2/3, 1; precision 1, 1/2, 2/3, 3/4. Envelope: 1 below recall
    # 1/3, 0.75 above. Samples 0..0.33 -> 1 (33 segments: 0.33), segment 0.33-0.34: (1 + 0.75)/2 * 0.01 = 0.00875,
    # 0.34..0.99 -> 0.75 (65 segments: 0.4875), last segment (0.75 + 0)/2 * 0.01 = 0.00375. Sum 0.83.
    assert compute_ap(np.array([1 / 3, 1 / 3, 2 / 3, 1]), np.array([1, 0.5, 2 / 3, 0.75])) == pytest.approx(0.83)
    assert compute_ap(np.array([]), np.array([])) == 0.0


def test_ap_per_class_and_mean() -> None:
    # Class 0: 3 gt, the ranked TP, FP, TP, TP case above (AP 0.83 at every threshold where it is given so).
    # Class 1: 1 gt, no prediction -> AP 0 and it counts in the mean. Class 2: no gt, one FP -> NaN, not counted.
    tp = np.array([[1], [0], [1], [1], [0]], bool)
    conf = np.array([0.9, 0.8, 0.7, 0.6, 0.95])
    pred_cls = np.array([0, 0, 0, 0, 2])
    target_cls = np.array([0, 0, 0, 1])
    res = ap_per_class(tp, conf, pred_cls, target_cls, nc=3)
    assert res.ap.shape == (3, 1)
    assert res.ap[0, 0] == pytest.approx(0.83)
    assert res.ap[1, 0] == 0.0
    assert np.isnan(res.ap[2, 0])
    assert res.mean() == pytest.approx((0.83 + 0.0) / 2)
    np.testing.assert_array_equal(res.n_labels, [3, 1, 0])
    np.testing.assert_array_equal(res.n_preds, [4, 0, 1])
    # The order the predictions come in does not matter (they are ranked by confidence).
    perm = np.array([4, 2, 0, 3, 1])
    again = ap_per_class(tp[perm], conf[perm], pred_cls[perm], target_cls, nc=3)
    np.testing.assert_array_equal(np.nan_to_num(again.ap, nan=-1), np.nan_to_num(res.ap, nan=-1))


def test_accumulator_maps_over_two_images() -> None:
    acc = DetectionAccumulator(nc=2)
    # Image 1: one class-0 gt found exactly; image 2: one class-1 gt found with IoU 0.4 (> 0.33 but < 0.5).
    acc.add(np.array([[0, 0, 10, 10]]), np.array([0.9]), np.array([0]), np.array([[0, 0, 10, 10]]), np.array([0]))
    _, deeppcb = acc.add(
        np.array([[0, 0, 10, 4]]), np.array([0.8]), np.array([1]), np.array([[0, 0, 10, 10]]), np.array([1])
    )
    assert deeppcb.tolist() == [True]
    coco, dpcb = acc.result()
    # Class 0 perfect at every threshold: 0.995. Class 1: a miss at IoU >= 0.5 -> 0; a hit under DeepPCB -> 0.995.
    np.testing.assert_allclose(coco.ap[0], 0.995)
    np.testing.assert_allclose(coco.ap[1], 0.0)
    assert coco.mean(0) == pytest.approx(0.995 / 2)
    assert coco.mean(slice(None)) == pytest.approx(0.995 / 2)
    assert dpcb.mean() == pytest.approx(0.995)
    assert len(COCO_IOU_THRESHOLDS) == coco.ap.shape[1] == 10


def test_precision_recall_f1_pooled_and_per_class() -> None:
    # 4 kept detections: class 0 TP, TP, FP; class 1 TP. 5 gt: 3 of class 0, 2 of class 1.
    pooled, per_class = precision_recall_f1(
        np.array([1, 1, 0, 1], bool), np.array([0, 0, 0, 1]), np.array([0, 0, 0, 1, 1]), nc=3
    )
    assert (pooled.tp, pooled.n_pred, pooled.n_gt) == (3, 4, 5)
    assert pooled.precision == pytest.approx(0.75)
    assert pooled.recall == pytest.approx(0.6)
    assert pooled.f1 == pytest.approx(2 * 0.75 * 0.6 / 1.35)
    assert per_class[0].precision == pytest.approx(2 / 3) and per_class[0].recall == pytest.approx(2 / 3)
    assert per_class[1].f1 == pytest.approx(2 * 1.0 * 0.5 / 1.5)
    assert per_class[2].f1 == 0.0 and per_class[2].precision == 0.0  # nothing predicted, nothing to find


def test_f1_best_thresholds_by_hand() -> None:
    # Class 0, 3 gt; detections by score: 0.9 TP, 0.8 TP, 0.6 FP, 0.5 TP, 0.3 FP.
    #   keep 1: F = 2*1/(1+3) = 0.5; keep 2: 4/5 = 0.8; keep 3: 4/6; keep 4: 6/7 = 0.857 (peak); keep 5: 6/8.
    #   The cut lies halfway between 0.5 (the weakest kept) and 0.3: 0.4.
    # Class 1, 1 gt; 0.7 TP, 0.65 FP, 0.2 FP (under the floor): peak with one box kept, cut at 0.675.
    # Class 2: detections but no ground truth; class 3: nothing at all: both stay at the floor.
    tp = np.array([1, 1, 0, 1, 0, 1, 0, 0, 0], bool)
    conf = np.array([0.9, 0.8, 0.6, 0.5, 0.3, 0.7, 0.65, 0.2, 0.95])
    pred_cls = np.array([0, 0, 0, 0, 0, 1, 1, 1, 2])
    target_cls = np.array([0, 0, 0, 1])
    got = f1_best_thresholds(tp, conf, pred_cls, target_cls, nc=4, floor=0.25)
    np.testing.assert_allclose(got, [0.4, 0.675, 0.25, 0.25])
    # A peak with every detection above the floor kept: the floor itself.
    assert f1_best_thresholds(tp[:4], conf[:4], pred_cls[:4], np.array([0, 0, 0, 0]), nc=1, floor=0.1)[0] == 0.1
    # Equal scores are cut together. 2 gt; a TP at 0.9, then a TP and an FP both at 0.6.
    tie = f1_best_thresholds(
        np.array([1, 1, 0], bool), np.array([0.9, 0.6, 0.6]), np.zeros(3, int), np.zeros(2, int), nc=1, floor=0.05
    )
    assert tie[0] == 0.05  # keep 1: F 2/3; keep all 3 (the tie together): 4/5, the peak, so the floor


def test_rejected_and_inspection_rates() -> None:
    # Scores: per image and class, the confidence at which that class rejects it (-1: no detection).
    defective = np.array([[0.9, -1.0], [0.2, 0.3], [-1.0, -1.0], [0.5, 0.5]])
    good = np.array([[0.1, -1.0], [0.3, 0.05], [-1.0, -1.0]])
    t = np.array([0.5, 0.3])
    # Defective: image 0 (0.9 >= 0.5), image 1 (0.3 >= 0.3: the threshold itself rejects), image 3 rejected;
    # image 2 escapes -> 1/4. Good: image 1 (0.3 < 0.5, 0.05 < 0.3) passes, all pass -> 0.
    np.testing.assert_array_equal(rejected(defective, t), [True, True, False, True])
    assert inspection_rates(defective, good, t) == (0.25, 0.0)
    # Lower class 0 to 0.1: good images 0 and 1 now rejected -> 2/3 false rejects; escapes unchanged.
    esc, fr = inspection_rates(defective, good, np.array([0.1, 0.3]))
    assert esc == 0.25 and fr == pytest.approx(2 / 3)
    # Several threshold sets at once: (k, nc) -> (k, n_images).
    many = rejected(good, np.array([[0.5, 0.3], [0.1, 0.3]]))
    np.testing.assert_array_equal(many, [[False, False, False], [True, True, False]])
    assert inspection_rates(np.zeros((0, 2)), np.zeros((0, 2)), t) == (0.0, 0.0)


# ------------------------------------------------------------------------------------------ decisions and calibration
def test_class_scores_agree_with_decide() -> None:
    from inspector.decide import decide
    from inspector.evaluate import class_scores
    from inspector.types import ClassThresholds, Detections, Thresholds

    names = {0: "a", 1: "b", 2: "c"}
    dets = Detections(
        np.array([[0, 0, 10, 10], [0, 0, 2, 2], [5, 5, 15, 15], [20, 20, 30, 30], [0, 0, 10, 10]], np.float32),
        np.array([0.9, 0.95, 0.6, 0.4, 0.7], np.float32),
        np.array([0, 0, 1, 1, 2]),
    )
    th = Thresholds(
        classes={
            "a": ClassThresholds(min_confidence=0.5, min_area_px=50),  # the 2x2 box (area 4) never counts
            "b": ClassThresholds(min_confidence=0.5, max_count=1),  # rejects only from the 2nd kept box on
            "c": ClassThresholds(min_confidence=0.1, enabled=False),
        }
    )
    scores = class_scores(dets, th, names)
    # a: eligible 0.9 (0.95 is too small) -> 0.9; b: eligible 0.6, 0.4, max_count 1 -> the 2nd highest 0.4;
    # c: disabled -> -1.
    np.testing.assert_allclose(scores, [0.9, 0.4, -1.0], atol=1e-6)
    for t_a, t_b in [(0.5, 0.5), (0.95, 0.5), (0.95, 0.3), (0.91, 0.41), (0.89, 0.39)]:
        th2 = th.model_copy(
            update={
                "classes": {
                    "a": ClassThresholds(min_confidence=t_a, min_area_px=50),
                    "b": ClassThresholds(min_confidence=t_b, max_count=1),
                    "c": ClassThresholds(min_confidence=0.1, enabled=False),
                }
            }
        )
        expect = decide(dets, th2, names).rejected
        assert rejected(scores[None, :], np.array([t_a, t_b, 0.1]))[0] == expect, (t_a, t_b)


def test_candidate_thresholds_are_midpoints() -> None:
    from inspector.calibrate import candidate_thresholds

    got = candidate_thresholds(np.array([0.3, -1.0, 0.5, 0.5, 0.02, 0.9]), floor=0.05)
    np.testing.assert_allclose(got, [0.05, 0.4, 0.7, 1.0])


def test_fit_max_escape_hand_case() -> None:
    from inspector.calibrate import fit_max_escape

    # Two classes. Defective images and their scores (a, b); defect-free ones likewise.
    defective = np.array([[0.9, -1], [0.8, -1], [0.3, -1], [-1, 0.7], [-1, 0.2]])
    good = np.array([[0.35, -1], [0.25, -1], [-1, 0.3], [-1, 0.1], [-1, -1]])
    # Budget 0 escapes: a must stay <= 0.3 to catch its weakest defect; the highest candidate below is the midpoint
    # 0.275 of 0.25 and 0.3, which rejects good 0.35 but not 0.25. b must stay <= 0.2: midpoint 0.15 (of 0.1 and
    # 0.2) rejects good 0.3. Rejected good images: 0.35 (a) and 0.3 (b): 2/5 false rejects, 0 escapes.
    fit = fit_max_escape(defective, good, 0.0, floor=0.05)
    np.testing.assert_allclose(fit.thresholds, [0.275, 0.15])
    assert (fit.escape_rate, fit.false_reject_rate, fit.feasible) == (0.0, 0.4, True)
    # Budget 1 escape (1/5 = 0.2). Candidates: a [0.05, 0.275, 0.325, 0.575, 0.85, 1], b [0.05, 0.15, 0.25, 0.5, 1].
    # Giving up the weak a defect (0.3): a -> 0.575 (above good 0.35) removes one false reject for one escape;
    # giving up the weak b defect (0.2): b -> 0.5 (above good 0.3) does the same. Tie: the smaller raise in
    # confidence wins, a (+0.3) over b (+0.35). Result: escapes {a 0.3}, false rejects {b 0.3}: 1/5 each.
    fit = fit_max_escape(defective, good, 0.2, floor=0.05)
    np.testing.assert_allclose(fit.thresholds, [0.575, 0.15])
    assert fit.escape_rate == pytest.approx(0.2) and fit.false_reject_rate == pytest.approx(0.2)
    # Budget 2: both raises -> 2 escapes, 0 false rejects.
    fit = fit_max_escape(defective, good, 0.4, floor=0.05)
    np.testing.assert_allclose(fit.thresholds, [0.575, 0.5])
    assert fit.escape_rate == pytest.approx(0.4) and fit.false_reject_rate == 0.0
    # Infeasible: a defective image without any detection escapes whatever the thresholds.
    fit = fit_max_escape(np.vstack([defective, [[-1, -1]]]), good, 0.0, floor=0.05)
    assert not fit.feasible and fit.escape_rate == pytest.approx(1 / 6)


def test_fit_max_false_reject_hand_case() -> None:
    from inspector.calibrate import fit_max_false_reject

    # 10 good images; class a fires on 3 of them (0.6, 0.4, 0.2), class b on 1 (0.5), on a different image.
    # Candidates (score + margin 0.01, and the floor): a [0.05, 0.21, 0.41, 0.61], b [0.05, 0.51].
    good = np.full((10, 2), -1.0)
    good[0, 0], good[1, 0], good[2, 0], good[3, 1] = 0.6, 0.4, 0.2, 0.5
    # R = 0: each class just above its highest good score.
    fit = fit_max_false_reject(good, 0.0, 0.05)
    np.testing.assert_allclose(fit.thresholds, [0.61, 0.51])
    assert fit.false_reject_rate == 0.0 and fit.feasible and np.isnan(fit.escape_rate)
    # R = 0.1 (1 image): b -> 0.05 drops 0.46 for one false reject, a -> 0.41 only 0.2: b moves.
    np.testing.assert_allclose(fit_max_false_reject(good, 0.1, 0.05).thresholds, [0.61, 0.05])
    # R = 0.2 (2 images): then a -> 0.41 (a -> 0.21 would make 3).
    fit = fit_max_false_reject(good, 0.2, 0.05)
    np.testing.assert_allclose(fit.thresholds, [0.41, 0.05])
    assert fit.false_reject_rate == pytest.approx(0.2)
    # A class that never fires on a good image sits at the floor from the start.
    np.testing.assert_allclose(fit_max_false_reject(np.full((4, 1), -1.0), 0.0, 0.05).thresholds, [0.05])


def test_fit_fewest_escapes_spends_the_budget_where_it_catches() -> None:
    from inspector.calibrate import fit_fewest_escapes, fit_max_false_reject

    # 10 good images: class a fires on one at 0.6, class b on another at 0.7. Candidates: a [0.05, 0.61],
    # b [0.05, 0.71]. Defective: two a defects (0.5, 0.45) and one b defect (0.2).
    good = np.full((10, 2), -1.0)
    good[0, 0], good[1, 1] = 0.6, 0.7
    defective = np.array([[0.5, -1.0], [0.45, -1.0], [-1.0, 0.2]])
    # A budget of one false reject: the good-only fit moves b (it drops 0.66 against a's 0.56) and catches one
    # defect; knowing the defects, a moves instead and catches two.
    plain = fit_max_false_reject(good, 0.1, 0.05)
    np.testing.assert_allclose(plain.thresholds, [0.61, 0.05])
    fit = fit_fewest_escapes(defective, good, 0.1, 0.05)
    np.testing.assert_allclose(fit.thresholds, [0.05, 0.71])
    assert fit.escape_rate == pytest.approx(1 / 3) and fit.false_reject_rate == pytest.approx(0.1) and fit.feasible
    # No budget: both start clean and stay; every defect passes.
    fit = fit_fewest_escapes(defective, good, 0.0, 0.05)
    np.testing.assert_allclose(fit.thresholds, [0.61, 0.71])
    assert (fit.escape_rate, fit.false_reject_rate) == (1.0, 0.0)
    # Without defective images it is the good-only fit.
    np.testing.assert_allclose(fit_fewest_escapes(np.zeros((0, 2)), good, 0.1, 0.05).thresholds, plain.thresholds)


def test_fit_fewest_escapes_never_worse_than_the_good_only_fit() -> None:
    from inspector.accuracy import inspection_rates
    from inspector.calibrate import fit_fewest_escapes, fit_max_false_reject

    rng = np.random.default_rng(11)
    for _ in range(30):
        nc = int(rng.integers(1, 5))
        good = np.where(rng.random((60, nc)) < 0.3, rng.random((60, nc)) * 0.7, -1.0)
        defective = np.where(rng.random((40, nc)) < 0.5, 0.2 + rng.random((40, nc)) * 0.8, -1.0)
        budget = float(rng.choice([0.0, 0.02, 0.05, 0.1]))
        fit = fit_fewest_escapes(defective, good, budget, 0.05)
        esc, fr = inspection_rates(defective, good, fit.thresholds)
        assert fr <= budget + 1e-12 and fit.feasible
        assert (esc, fr) == pytest.approx((fit.escape_rate, fit.false_reject_rate))
        plain = fit_max_false_reject(good, budget, 0.05)
        assert esc <= inspection_rates(defective, good, plain.thresholds)[0] + 1e-12


def test_fit_max_escape_coordinated_raise() -> None:
    from inspector.calibrate import fit_max_escape

    # One good image fires both classes at 0.5; each class has one defect at 0.8. From the floor, raising either
    # class alone removes no false reject (the other still rejects), so one-class-at-a-time raising stalls at
    # 1/1 false rejects; the start from the best shared threshold (0.65 for both, the candidates between 0.5 and
    # 0.8) gets 0 escapes and 0 false rejects.
    defective = np.array([[0.8, -1.0], [-1.0, 0.8]])
    good = np.array([[0.5, 0.5]])
    fit = fit_max_escape(defective, good, 0.0, floor=0.05)
    np.testing.assert_allclose(fit.thresholds, [0.65, 0.65])
    assert (fit.escape_rate, fit.false_reject_rate) == (0.0, 0.0)


def test_fit_max_escape_never_worse_than_one_shared_threshold() -> None:
    from inspector.calibrate import fit_max_escape, sweep_global

    rng = np.random.default_rng(7)
    for _ in range(20):
        nc = int(rng.integers(1, 5))
        # Defective images score higher than good ones on average; -1 where a class found nothing.
        defective = np.where(rng.random((40, nc)) < 0.5, rng.beta(4, 2, (40, nc)), -1.0)
        good = np.where(rng.random((40, nc)) < 0.4, rng.beta(2, 4, (40, nc)), -1.0)
        for max_escape in (0.0, 0.05, 0.2):
            fit = fit_max_escape(defective, good, max_escape, floor=0.05)
            shared = sweep_global(defective, good, 0.05, steps=1001)
            ok = shared[shared[:, 1] <= max_escape + 1e-12]
            if len(ok):
                assert fit.feasible and fit.escape_rate <= max_escape + 1e-12
                assert fit.false_reject_rate <= ok[:, 2].min() + 1e-12
            np.testing.assert_allclose(
                inspection_rates(defective, good, fit.thresholds), (fit.escape_rate, fit.false_reject_rate)
            )
