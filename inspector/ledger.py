"""Part records: the `Ledger` of parts seen, decided and in flight, and the triggers waiting for a frame."""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass

from inspector.part_ids import PartIds
from inspector.protocols import Recipe
from inspector.types import Frame, Verdict

__all__ = ["IDLE_POLL_S", "Ledger", "Part", "PendingTriggers", "stamp"]

IDLE_POLL_S = 0.5  # longest sleep of a line thread waiting for work (it re-checks for stop)


@dataclass(slots=True)
class Part:
    """A part between being seen and being decided.

    recipe: the recipe active when its frame was captured; it decides the part, whatever is active by then (a
    changeover lands between parts: those captured before it are decided with the old recipe).
    """

    seq: int
    part_id: int
    seen_ns: int
    deadline_ns: int | None
    frame: Frame | None = None
    dequeued_ns: int = 0
    recipe: Recipe | None = None
    run: int = 0


class Ledger:
    """Parts seen, decided and in flight, under one lock so that `seen == decided + in_flight` always holds.

    `close()` is the single claim: the first caller for a part gets True and must emit its verdict; later
    callers get False (their result is late and dropped, counted in `late`).

    ids: where each part's `seq` comes from (and a free-run part's id, the same number), never reused by the same
    line and camera across restarts when it is the store's (`inspector.part_ids`); default: counting from 1.
    """

    def __init__(self, ids: PartIds | None = None) -> None:
        self.lock = threading.Lock()
        self.open: dict[int, Part] = {}
        self.seen = self.decided = self.passed = self.rejected = 0
        self.failsafe = self.errors = self.frames_dropped = self.frames_idle = self.late = 0
        self.ids = ids or PartIds()

    @property
    def run(self) -> int:
        """This start of the inspector (`inspector.part_ids`)."""
        return self.ids.run

    def open_part(self, part_id: int | None, now_ns: int, gate_ns: int | None) -> Part:
        """A part seen now: `part_id` from the PLC (triggered), or None for a free-run part (its id is its seq)."""
        with self.lock:
            seq = self.ids.next()
            deadline = now_ns + gate_ns if gate_ns is not None else None
            part = Part(seq, seq if part_id is None else part_id, now_ns, deadline, run=self.ids.run)
            self.open[part.seq] = part
            self.seen += 1
            return part

    def is_open(self, seq: int) -> bool:
        with self.lock:
            return seq in self.open

    def open_parts(self) -> list[Part]:
        """The parts not decided yet (a copy)."""
        with self.lock:
            return list(self.open.values())

    def close(self, seq: int, verdict: Verdict, count_late: bool = True) -> bool:
        """Claim part `seq` with `verdict`; False when it was already decided (then, with `count_late`, the
        verdict counts as late)."""
        with self.lock:
            if self.open.pop(seq, None) is None:
                self.late += count_late
                return False
            self.decided += 1
            if verdict.rejected:
                self.rejected += 1
            else:
                self.passed += 1
            if "error" in verdict.reasons:
                self.errors += 1
            if verdict.failsafe:
                self.failsafe += 1
            return True

    def count_frame(self, dropped: bool) -> None:
        with self.lock:
            if dropped:
                self.frames_dropped += 1
            else:
                self.frames_idle += 1

    def snapshot(self) -> dict[str, int]:
        with self.lock:
            return {
                "seen": self.seen,
                "decided": self.decided,
                "in_flight": len(self.open),
                "passed": self.passed,
                "rejected": self.rejected,
                "failsafe": self.failsafe,
                "errors": self.errors,
                "frames_dropped": self.frames_dropped,
                "frames_idle": self.frames_idle,
                "late": self.late,
            }


def stamp(verdict: Verdict, part: Part, recipe: Recipe, camera_id: str, keep_image: bool) -> None:
    """Fill in what every verdict carries besides the decision."""
    verdict.part_id = part.part_id
    verdict.seq = part.seq
    verdict.run = part.run
    verdict.camera_id = camera_id
    verdict.deadline_ns = part.deadline_ns
    verdict.recipe = recipe.name
    verdict.model_sha256 = recipe.sha256
    verdict.names = recipe.names  # whoever writes the verdict out names its defects as this recipe's model does
    if part.frame is not None:
        verdict.truth = part.frame.truth
        if keep_image:
            verdict.image = part.frame.image


class PendingTriggers:
    """Triggered parts waiting for their frame, oldest first; at most `limit` (beyond it the oldest overflows)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._parts: deque[Part] = deque()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._parts)

    def add(self, part: Part) -> Part | None:
        """Queue `part`; returns the oldest part when the queue overflows (the caller fails it safe)."""
        with self._lock:
            self._parts.append(part)
            if len(self._parts) > self.limit:
                return self._parts.popleft()
        return None

    def match(self, captured_ns: int, ledger: Ledger) -> Part | None:
        """The part a frame captured at `captured_ns` belongs to: the oldest still-open trigger before it."""
        with self._lock:
            while self._parts:
                candidate = self._parts.popleft()
                if candidate.seen_ns < captured_ns and ledger.is_open(candidate.seq):
                    return candidate
                if candidate.seen_ns >= captured_ns:  # triggered after this frame: wait for the next one
                    self._parts.appendleft(candidate)
                    return None
        return None

    def take_all(self) -> list[Part]:
        with self._lock:
            parts, self._parts = list(self._parts), deque()
        return parts
