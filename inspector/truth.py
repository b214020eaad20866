"""Ground truth, typed: what is known of a part (`GroundTruth`) and what a verdict on it was (`judge`).

The demo scores the inspector's verdicts against the truth its frame source knows, and the PLC simulator scores
its gate against the `truth` that verdict messages carry. The production PLC link does not need it: a verdict
record carries the source's truth as a flag (`inspector.verdict.truth_flag_of`).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["GroundTruth", "Judgement", "judge"]


@dataclass(frozen=True, slots=True)
class GroundTruth:
    """What is known of one part: defective or not."""

    defective: bool

    @classmethod
    def of(cls, truth: Any) -> GroundTruth | None:
        """The ground truth a frame source carries, whatever its shape; None when it says nothing.

        Accepts a `GroundTruth`, a bool, a 0/1 number, a mapping with `defective` (or `reject`, `bad`) or with a
        list of `boxes` (`defects`, `labels`), an object with a `defective` attribute (the synthetic line's
        `PartTruth`, a labelled folder's `ImageTruth`), or a list / array / `Detections` of true defects
        (non-empty = defective).
        """
        flag = _defective(truth)
        return None if flag is None else cls(flag)

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> GroundTruth | None:
        """The truth a `verdict` message carries (its optional `truth` flag), None without one."""
        flag = payload.get("truth")
        return cls(flag) if isinstance(flag, bool) else None


class Judgement(enum.StrEnum):
    """A verdict (or a gate's action) against the truth."""

    CORRECT = "correct"
    ESCAPE = "escape"  # a defective part passed
    FALSE_REJECT = "false_reject"  # a good part rejected


def judge(rejected: bool, truth: GroundTruth) -> Judgement:
    """How rejecting (or passing) a part compares with its truth."""
    if truth.defective and not rejected:
        return Judgement.ESCAPE
    if rejected and not truth.defective:
        return Judgement.FALSE_REJECT
    return Judgement.CORRECT


def _defective(truth: Any) -> bool | None:
    if truth is None:
        return None
    if isinstance(truth, bool | np.bool_ | int | np.integer):
        return bool(truth)
    if isinstance(truth, Mapping):
        for key in ("defective", "reject", "bad"):
            if key in truth:
                return _defective(truth[key])
        for key in ("boxes", "defects", "labels"):
            if key in truth:
                return _defective(list(truth[key]) if truth[key] is not None else None)
        return None
    if hasattr(truth, "defective"):
        return _defective(truth.defective)
    if isinstance(truth, np.ndarray):
        return bool(truth.size)
    if isinstance(truth, Sequence) and not isinstance(truth, str | bytes):
        return len(truth) > 0
    if hasattr(truth, "__len__"):
        return len(truth) > 0
    return None
