"""Plant-wide part counts: per recipe (summed over lines), and per shift (what the fleet view saw arrive in it).

Counts are the heartbeat's `recipes` entries (`inspector.plc.tally.RecipeCounts` as a dict): parts, rejected,
failsafe, scored (truth known), defective, escapes, false_rejects. `with_rates` adds yield and escape rate.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from inspector.fleet.shifts import Shift, Shifts

__all__ = ["COUNT_KEYS", "ShiftBook", "add_into", "subtract", "summed", "with_rates"]

COUNT_KEYS = ("parts", "rejected", "failsafe", "scored", "defective", "escapes", "false_rejects")

Counts = dict[str, int]


def _clean(counts: Any) -> Counts:
    """The known keys as non-negative ints (a malformed heartbeat must not poison the totals)."""
    if not isinstance(counts, Mapping):
        return dict.fromkeys(COUNT_KEYS, 0)
    out = {}
    for key in COUNT_KEYS:
        value = counts.get(key, 0)
        out[key] = int(value) if isinstance(value, int | float) and not isinstance(value, bool) and value > 0 else 0
    return out


def add_into(total: dict[str, Counts], recipes: Mapping[str, Any]) -> None:
    """Add per-recipe `recipes` into `total` (recipe -> counts)."""
    for recipe, counts in recipes.items():
        into = total.setdefault(recipe, dict.fromkeys(COUNT_KEYS, 0))
        for key, value in _clean(counts).items():
            into[key] += value


def subtract(new: Mapping[str, Any], old: Mapping[str, Any]) -> dict[str, Counts]:
    """Per recipe `new - old` (cumulative counts of one process life), dropping recipes with nothing new."""
    out = {}
    for recipe, counts in new.items():
        now, before = _clean(counts), _clean(old.get(recipe, {}))
        delta = {key: max(now[key] - before[key], 0) for key in COUNT_KEYS}
        if any(delta.values()):
            out[recipe] = delta
    return out


def with_rates(counts: Mapping[str, int]) -> dict[str, Any]:
    """Counts plus `yield` (passed share of parts) and `escape_rate` (escapes per defective part, None when no
    part's truth was known)."""
    parts = counts.get("parts", 0)
    defective = counts.get("defective", 0)
    return {
        **counts,
        "passed": parts - counts.get("rejected", 0),
        "yield": round((parts - counts.get("rejected", 0)) / parts, 4) if parts else None,
        "escape_rate": round(counts.get("escapes", 0) / defective, 4) if defective else None,
    }


def summed(per_recipe: Mapping[str, Mapping[str, int]]) -> Counts:
    """All recipes together."""
    total = dict.fromkeys(COUNT_KEYS, 0)
    for counts in per_recipe.values():
        for key in COUNT_KEYS:
            total[key] += counts.get(key, 0)
    return total


class ShiftBook:
    """Part counts per shift, per recipe and per line, for the last `keep` shifts (in memory: a fleet view that
    restarts mid-shift counts from its start, plus the parts of lines that started in this shift)."""

    def __init__(self, shifts: Shifts, keep: int = 9) -> None:
        self.shifts = shifts
        self.keep = keep
        self._book: OrderedDict[float, dict[str, Any]] = OrderedDict()

    def add(self, ts: float, line: str, deltas: Mapping[str, Mapping[str, int]]) -> None:
        """Count `deltas` (recipe -> counts) of `line` in the shift of Unix time `ts`."""
        if not deltas:
            return
        entry = self._entry(self.shifts.at(ts))
        add_into(entry["recipes"], deltas)
        add_into(entry["lines"].setdefault(line, {}), deltas)

    def _entry(self, shift: Shift) -> dict[str, Any]:
        entry = self._book.get(shift.start)
        if entry is None:
            entry = {"name": shift.name, "start": shift.start, "end": shift.end, "recipes": {}, "lines": {}}
            self._book[shift.start] = entry
            while len(self._book) > self.keep:
                self._book.popitem(last=False)
        return entry

    def report(self, now: float) -> list[dict[str, Any]]:
        """Newest shift first (the current one always listed): name, start, end, current, totals, recipes and
        lines with their rates."""
        self._entry(self.shifts.at(now))
        out = []
        for entry in reversed(self._book.values()):
            recipes = entry["recipes"]
            lines = {name: with_rates(summed(per)) for name, per in sorted(entry["lines"].items())}
            out.append(
                {
                    "name": entry["name"],
                    "start": entry["start"],
                    "end": entry["end"],
                    "current": entry["start"] <= now < entry["end"],
                    "total": with_rates(summed(recipes)),
                    "recipes": {name: with_rates(c) for name, c in sorted(recipes.items())},
                    "lines": lines,
                }
            )
        return out
