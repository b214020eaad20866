"""What the PLC simulator saw at the reject gate (`inspector.sim.plc.PlcSimulator`'s report)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["SimReport"]


@dataclass
class SimReport:
    """What the PLC saw at the gate.

    parts: parts that reached the gate. rejected = rejected_on_answer + rejected_missing; passed the rest.
    missing_answers: parts with no answer at their gate (rejected, fail safe). late_answers: answers that came
    after their part's gate. duplicates: repeated answers (QoS 1), ignored. unexpected: answers for ids the
    simulator never sent (triggered mode). truth_known: parts whose verdict carried `truth`; escapes and
    false_rejects count among those.
    """

    parts: int = 0
    passed: int = 0
    rejected: int = 0
    rejected_on_answer: int = 0
    rejected_missing: int = 0
    missing_answers: int = 0
    late_answers: int = 0
    duplicates: int = 0
    unexpected: int = 0
    truth_known: int = 0
    defective: int = 0
    escapes: int = 0
    false_rejects: int = 0
    protocol: str = ""
    reconnects: int = 0
    missing_ids: list[int] = field(default_factory=list)
    escape_ids: list[int] = field(default_factory=list)
    false_reject_ids: list[int] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        """Human-readable lines for the terminal."""
        lines = [
            f"parts {self.parts}: passed {self.passed}, rejected {self.rejected} "
            f"({self.rejected_on_answer} on answer, {self.rejected_missing} for a missing answer)",
            f"missing answers {self.missing_answers}, late answers {self.late_answers}, "
            f"duplicates {self.duplicates}, unexpected {self.unexpected}",
        ]
        if self.truth_known:
            lines.append(
                f"truth known for {self.truth_known} parts ({self.defective} defective): "
                f"escapes {self.escapes}, false rejects {self.false_rejects}"
            )
        else:
            lines.append("truth unknown: no escape / false-reject count")
        return "\n".join(lines)
