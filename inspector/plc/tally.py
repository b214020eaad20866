"""What a heartbeat says about the parts a line has answered: latency percentiles over a recent window and
cumulative counts per recipe (with escapes and false rejects where the source knows the truth).

Counted from the verdicts the link handles, so a plant view (`inspector fleet`) gets plant-wide totals from the
heartbeats alone, without subscribing to every verdict of every line.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from inspector.stats import LatencyWindow
from inspector.types import Verdict
from inspector.verdict import truth_flag_of

__all__ = ["LATENCY_WINDOW", "RecipeCounts", "VerdictTally"]

LATENCY_WINDOW = 1024  # parts in the heartbeat's `latency_ms` window


@dataclass(slots=True)
class RecipeCounts:
    """Parts of one recipe since the link started. `scored`: parts whose verdict carried the truth; `escapes`
    (defective, passed) and `false_rejects` (good, rejected) count among those."""

    parts: int = 0
    rejected: int = 0
    failsafe: int = 0
    scored: int = 0
    defective: int = 0
    escapes: int = 0
    false_rejects: int = 0

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


class VerdictTally:
    """Per-recipe counts and a latency window; not thread-safe (the link calls it under its own lock)."""

    def __init__(self, window: int = LATENCY_WINDOW) -> None:
        self.latency = LatencyWindow(window)
        self.recipes: dict[str, RecipeCounts] = {}

    def add(self, verdict: Verdict) -> None:
        counts = self.recipes.setdefault(verdict.recipe or "default", RecipeCounts())
        counts.parts += 1
        counts.rejected += verdict.rejected
        counts.failsafe += verdict.failsafe
        defective = truth_flag_of(verdict.truth)
        if defective is not None:
            counts.scored += 1
            counts.defective += defective
            counts.escapes += defective and not verdict.rejected
            counts.false_rejects += (not defective) and verdict.rejected
        latency = verdict.timings.latency_ms()
        if not verdict.failsafe and latency > 0:  # as the dashboard: inspected parts only
            self.latency.add(latency)

    def latency_summary(self) -> dict[str, float | int]:
        """`{"p50", "p99", "n"}` in ms over the window; `n` is the number of samples in it."""
        summary = self.latency.summary()
        return {"p50": summary["p50"], "p99": summary["p99"], "n": min(self.latency.count, self.latency.size)}

    def recipes_summary(self) -> dict[str, dict[str, int]]:
        return {name: counts.to_dict() for name, counts in self.recipes.items()}
