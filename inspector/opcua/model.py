"""What the OPC UA server shows, in plain Python (no asyncua): the line's state in OPC 40100-1 terms, one part's
result, and the bounded hand-off from the pipeline's dispatch thread to the server's asyncio loop.

States (docs/plant.md): the Machine Vision `VisionStateMachine` is Preoperational, Halted, Error or Operational;
inside Operational its `AutomaticModeStateMachine` is Initialized, Ready, SingleExecution or ContinuousExecution.
`line_state` maps the pipeline's status onto the pair.
"""

from __future__ import annotations

import collections
import contextlib
import datetime
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from inspector.types import Verdict

__all__ = [
    "AUTO_STATES",
    "RESULT_FAILSAFE",
    "RESULT_OK",
    "RESULT_REJECT",
    "VISION_STATES",
    "LineState",
    "Mailbox",
    "PartResult",
    "line_state",
    "pipeline_status",
]

# Names and numbers as OPC 40100-1 lists them (Number is the StateVariable's `Number` property).
VISION_STATES = {"Preoperational": 1, "Halted": 2, "Error": 3, "Operational": 4}
AUTO_STATES = {"Initialized": 1, "Ready": 2, "SingleExecution": 3, "ContinuousExecution": 4}

# ResultState: OPC 40100-1 leaves the values to the vendor, > 0 good, < 0 bad, 0 undefined.
RESULT_OK = 1
RESULT_REJECT = -1  # the model found a defect
RESULT_FAILSAFE = -2  # not inspected in time, or inspection failed: rejected to be safe


@dataclass(frozen=True, slots=True)
class LineState:
    """The two state machines' current states and why (the Error cause, empty otherwise)."""

    vision: str
    auto: str
    cause: str = ""


def line_state(status: Mapping[str, Any], *, model_error: str = "", jobs_in_flight: int = 0) -> LineState:
    """The Machine Vision states of the line.

    status: `{"running", "camera_connected", "camera_failures", "paused", "ready", "triggered"}` (the service's
        status callback). model_error: the last inspection failure, empty once a part was inspected again.
    jobs_in_flight: `StartSingleJob` parts not decided yet.
    """
    if not status.get("running"):
        return LineState("Preoperational", "Initialized")
    if not status.get("camera_connected"):
        if status.get("camera_failures"):
            return LineState("Error", "Initialized", "camera lost")
        return LineState("Preoperational", "Initialized")  # still opening the camera
    if model_error:
        return LineState("Error", "Initialized", f"inspection failed: {model_error}")
    if status.get("paused"):
        return LineState("Halted", "Initialized")
    if not status.get("ready"):
        return LineState("Operational", "Initialized")  # e.g. too many parts waiting
    if not status.get("triggered"):
        return LineState("Operational", "ContinuousExecution")  # free-run: every frame is a part
    return LineState("Operational", "SingleExecution" if jobs_in_flight else "Ready")


def pipeline_status(pipeline: Any) -> dict[str, Any]:
    """What `line_state` reads, from an `inspector.pipeline.Pipeline` (cheap: no stats snapshot)."""
    camera = pipeline.camera
    return {
        "running": not pipeline.done,
        "camera_connected": bool(camera.get("connected")),
        "camera_failures": int(camera.get("lost", 0)) + int(camera.get("open_failures", 0)),
        "paused": pipeline.paused,
        "ready": pipeline.ready(),
        "triggered": pipeline.trigger_config.mode == "triggered",
        "recipe": pipeline.recipe,
    }


@dataclass(frozen=True, slots=True)
class PartResult:
    """One part's result as the server publishes it (built on the dispatch thread: cheap, immutable)."""

    result_id: str
    part_id: int
    job_id: str
    state: int
    decision: str  # OK or NG
    reasons: tuple[str, ...]
    defect_classes: tuple[str, ...]
    recipe: str
    model_sha256: str
    thresholds_version: int
    latency_ms: float
    created: datetime.datetime

    @classmethod
    def of(cls, verdict: Verdict, job_id: str = "") -> PartResult:
        state = RESULT_OK if not verdict.rejected else RESULT_FAILSAFE if verdict.failsafe else RESULT_REJECT
        classes = tuple(dict.fromkeys(d["class"] for d in verdict.to_record().defects()))
        return cls(
            result_id=f"{verdict.camera_id}-{verdict.seq}",
            part_id=int(verdict.part_id),
            job_id=job_id,
            state=state,
            decision="NG" if verdict.rejected else "OK",
            reasons=tuple(str(r) for r in verdict.reasons),
            defect_classes=classes,
            recipe=verdict.recipe,
            model_sha256=verdict.model_sha256,
            thresholds_version=int(verdict.thresholds_version),
            latency_ms=round(verdict.timings.latency_ms(), 3),
            created=datetime.datetime.now(datetime.UTC),
        )


class Mailbox:
    """A bounded, thread-safe hand-off of results to the asyncio loop that never blocks the producer.

    `put` (any thread) appends and, when the consumer is not already woken, asks `wake` (e.g.
    `loop.call_soon_threadsafe(event.set)`) once; a full mailbox drops its oldest result and counts it.
    """

    def __init__(self, size: int) -> None:
        self._items: collections.deque[PartResult] = collections.deque()
        self._size = size
        self._lock = threading.Lock()
        self._woken = False
        self.dropped = 0
        self.wake: Callable[[], None] | None = None

    def put(self, item: PartResult) -> None:
        with self._lock:
            if len(self._items) >= self._size:
                self._items.popleft()
                self.dropped += 1
            self._items.append(item)
            wake, self._woken = not self._woken, True
        if wake and self.wake is not None:
            with contextlib.suppress(RuntimeError):  # the loop has closed: the server is stopping
                self.wake()

    def take(self) -> list[PartResult]:
        """Everything waiting, oldest first; the next `put` wakes the consumer again."""
        with self._lock:
            items = list(self._items)
            self._items.clear()
            self._woken = False
        return items

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)
