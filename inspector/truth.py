"""Ground truth as "is this part defective?": decoding the shapes a frame source's `truth` may take.

The demo and the PLC simulator score verdicts against it; the verdict payload passes it on when a source knows it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["truth_flag"]


def truth_flag(truth: Any) -> bool | None:
    """Ground truth as "is this part defective?": True / False, or None when unknown.

    Accepts what sources carry: a bool, a 0/1 number, a mapping with `defective` (or `reject`, `bad`), an object
    with a `defective` attribute, or a list / array / `Detections` of true defects (non-empty = defective).
    """
    if truth is None:
        return None
    if isinstance(truth, bool | np.bool_):
        return bool(truth)
    if isinstance(truth, int | np.integer):
        return bool(truth)
    if isinstance(truth, Mapping):
        for key in ("defective", "reject", "bad"):
            if key in truth:
                return truth_flag(truth[key])
        for key in ("boxes", "defects", "labels"):
            if key in truth:
                return truth_flag(list(truth[key]) if truth[key] is not None else None)
        return None
    if hasattr(truth, "defective"):
        return truth_flag(truth.defective)
    if isinstance(truth, np.ndarray):
        return bool(truth.size)
    if isinstance(truth, Sequence) and not isinstance(truth, str | bytes):
        return len(truth) > 0
    if hasattr(truth, "__len__"):
        return len(truth) > 0
    return None
