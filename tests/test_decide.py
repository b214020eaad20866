"""The pure decision and the atomically swapped thresholds."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from inspector.decide import decide, kept_mask, roi_mask
from inspector.thresholds import ThresholdsHolder
from inspector.types import ClassThresholds, Decision, Detections, Thresholds

NAMES = {0: "short", 1: "open", 2: "spur"}


def dets(*rows: tuple[float, float, float, float, float, int]) -> Detections:
    """rows of (x1, y1, x2, y2, confidence, class)."""
    if not rows:
        return Detections.empty()
    a = np.array(rows, np.float32)
    return Detections(a[:, :4], a[:, 4], a[:, 5].astype(np.int64))


def test_no_detection_passes() -> None:
    v = decide(Detections.empty(), Thresholds(), NAMES, part_id=3)
    assert v.decision == Decision.PASS and v.reasons == [] and v.part_id == 3 and len(v.kept) == 0


def test_any_kept_defect_rejects_by_default() -> None:
    v = decide(dets((0, 0, 10, 10, 0.3, 1)), Thresholds(), NAMES)
    assert v.decision == Decision.REJECT and v.reasons == ["open"] and v.kept.tolist() == [True]


def test_per_class_minimum_confidence() -> None:
    t = Thresholds(default=ClassThresholds(min_confidence=0.5), classes={"short": ClassThresholds(min_confidence=0.2)})
    d = dets((0, 0, 10, 10, 0.3, 0), (0, 0, 10, 10, 0.3, 1), (0, 0, 10, 10, 0.5, 2))
    v = decide(d, t, NAMES)
    assert v.kept.tolist() == [True, False, True]  # 0.5 >= 0.5 keeps (inclusive)
    assert set(v.reasons) == {"short", "spur"}
    assert v.detections is d  # every detection stays on the verdict; `kept` marks the defects


def test_minimum_area_in_pixels() -> None:
    t = Thresholds(default=ClassThresholds(min_area_px=100))
    v = decide(dets((0, 0, 9, 10, 0.9, 0), (0, 0, 10, 10, 0.9, 1)), t, NAMES)
    assert v.kept.tolist() == [False, True] and v.reasons == ["open"]


def test_max_count_rejects_only_above_it() -> None:
    t = Thresholds(classes={"spur": ClassThresholds(max_count=2)})
    two = dets((0, 0, 5, 5, 0.9, 2), (10, 10, 15, 15, 0.8, 2))
    three = dets((0, 0, 5, 5, 0.9, 2), (10, 10, 15, 15, 0.8, 2), (20, 20, 25, 25, 0.7, 2))
    assert decide(two, t, NAMES).decision == Decision.PASS
    assert decide(three, t, NAMES).reasons == ["spur"]


def test_disabled_class_never_rejects() -> None:
    t = Thresholds(classes={"open": ClassThresholds(enabled=False)})
    v = decide(dets((0, 0, 10, 10, 0.99, 1)), t, NAMES)
    assert v.decision == Decision.PASS and not v.kept.any()


def test_roi_ignores_detections_whose_centre_is_outside() -> None:
    t = Thresholds(roi=[(0, 0), (100, 0), (100, 100), (0, 100)])
    inside = (40, 40, 60, 60, 0.9, 0)
    straddling = (90, 90, 130, 130, 0.9, 1)  # centre (110, 110): outside, though the box overlaps
    on_edge = (90, 40, 110, 60, 0.9, 2)  # centre (100, 50): on the edge counts as inside
    v = decide(dets(inside, straddling, on_edge), t, NAMES)
    assert v.kept.tolist() == [True, False, True] and set(v.reasons) == {"short", "spur"}
    assert roi_mask(dets(inside), None).tolist() == [True]


def test_reasons_are_most_confident_first_and_unnamed_classes_use_their_id() -> None:
    v = decide(dets((0, 0, 5, 5, 0.4, 0), (0, 0, 5, 5, 0.9, 1), (0, 0, 5, 5, 0.6, 7)), Thresholds(), NAMES)
    assert v.reasons == ["open", "7", "short"]


def test_kept_mask_is_pure() -> None:
    d = dets((0, 0, 5, 5, 0.4, 0))
    t = Thresholds()
    assert kept_mask(d, t, NAMES).tolist() == kept_mask(d, t, NAMES).tolist() == [True]


def test_verdict_names_the_thresholds_version() -> None:
    assert decide(Detections.empty(), Thresholds(version=7), NAMES).thresholds_version == 7


def test_holder_swaps_whole_objects_with_counted_versions() -> None:
    holder = ThresholdsHolder(Thresholds())
    before = holder.get()
    new = holder.swap(Thresholds(version=99, default=ClassThresholds(min_confidence=0.8)))
    assert new.version == 2 and holder.get() is new and before.version == 1  # the old object is untouched
    with pytest.raises(ThresholdsHolder.StaleVersionError):
        holder.swap(Thresholds(), expected_version=1)
    assert holder.swap(Thresholds(), expected_version=2).version == 3


def test_concurrent_swaps_lose_no_update_and_readers_see_whole_objects() -> None:
    holder = ThresholdsHolder(Thresholds())
    seen: list[Thresholds] = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            t = holder.get()
            # each object is internally consistent: its two fields were written together
            assert t.default.min_confidence == t.default.min_area_px / 1000
            seen.append(t)

    def writer(k: int) -> None:
        for i in range(200):
            value = ((k * 200 + i) % 100) / 100
            holder.swap(Thresholds(default=ClassThresholds(min_confidence=value, min_area_px=value * 1000)))

    holder.swap(Thresholds(default=ClassThresholds(min_confidence=0.0, min_area_px=0.0)))
    readers = [threading.Thread(target=reader) for _ in range(2)]
    writers = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
    for t in readers + writers:
        t.start()
    for t in writers:
        t.join()
    stop.set()
    for t in readers:
        t.join()
    assert holder.get().version == 2 + 4 * 200
    assert seen
