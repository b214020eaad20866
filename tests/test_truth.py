"""Typed ground truth: the shapes a frame source's truth may take, and judging a verdict against it."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from inspector.sim import SyntheticLine
from inspector.sources import ImageTruth
from inspector.truth import GroundTruth, Judgement, judge
from inspector.types import Detections


@pytest.mark.parametrize(
    ("truth", "flag"),
    [
        (None, None),
        (True, True),
        (False, False),
        (np.bool_(True), True),
        (0, False),
        (1, True),
        ({"defective": True}, True),
        ({"boxes": []}, False),
        ({"boxes": [[1, 2, 3, 4]]}, True),
        ({}, None),
        ([], False),
        ([("short", 1)], True),
        (np.zeros((0, 4)), False),
        (np.ones((2, 4)), True),
        (Detections.empty(), False),
        (GroundTruth(True), True),
        (ImageTruth(False, "good/a.png", (), "folder"), False),
    ],
)
def test_ground_truth_of_what_sources_carry(truth: Any, flag: bool | None) -> None:
    got = GroundTruth.of(truth)
    assert (got.defective if got is not None else None) is flag


def test_ground_truth_of_a_synthetic_part() -> None:
    line = SyntheticLine(seed=2, defect_rate=0.5)
    parts = [line.make_part(i) for i in range(8)]
    assert [GroundTruth.of(p.truth()) for p in parts] == [GroundTruth(p.defective) for p in parts]


def test_ground_truth_from_a_verdict_message() -> None:
    assert GroundTruth.from_payload({"part_id": 1, "truth": True}) == GroundTruth(True)
    assert GroundTruth.from_payload({"part_id": 1}) is None
    assert GroundTruth.from_payload({"part_id": 1, "truth": 1}) is None  # the schema's truth is a boolean


def test_judge() -> None:
    bad, good = GroundTruth(True), GroundTruth(False)
    assert judge(rejected=True, truth=bad) is Judgement.CORRECT
    assert judge(rejected=False, truth=good) is Judgement.CORRECT
    assert judge(rejected=False, truth=bad) is Judgement.ESCAPE
    assert judge(rejected=True, truth=good) is Judgement.FALSE_REJECT
