"""What the pipeline needs of the things it is given: a `Detector` per worker, `Sink`s for verdicts, `Recipe`s."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from inspector.registration import Registered, Unregistered
from inspector.thresholds import ThresholdsHolder
from inspector.types import Detections, Verdict

__all__ = ["Detector", "FrameRegistrar", "Recipe", "Sink"]


@runtime_checkable
class Sink(Protocol):
    """Where verdicts go (MQTT link, store, ...). `handle` runs on the dispatch thread: keep it quick."""

    name: str

    def handle(self, verdict: Verdict) -> None: ...

    def close(self) -> None: ...


class Detector(Protocol):
    """What the pipeline needs of `inspector.detector.OnnxDetector` (a test double may stand in)."""

    sha256: str
    names: dict[int, str]
    max_batch: int

    def preprocess(self, images: Sequence[np.ndarray]) -> Any: ...

    def infer(self, prepared: Any) -> np.ndarray: ...

    def postprocess(
        self, raw: np.ndarray, prepared: Any, conf: float | None = None, iou: float | None = None
    ) -> list[Detections]: ...


class FrameRegistrar(Protocol):
    """What the pipeline needs of a golden reference: `inspector.registration.Registrar` (a benchmark over pairs
    gives each frame its own, `inspector.reference_inputs.PairedRegistrar`)."""

    def register(self, frame: np.ndarray) -> Registered | Unregistered: ...


@dataclass
class Recipe:
    """One product: its detectors (one per inference worker; they may be the same object) and thresholds.

    model: what the line reports about the model in use (file, precision, execution providers, self-test; see
    `inspector.line.load_recipe`); alarm: set when the recipe runs on its fallback model.
    reference: the product's golden reference, when it has one (issue 15): each frame is registered to it and the
    detectors get the composite of the frame and the registered reference (`inspector.reference`).
    gate_ms: this product's capture-to-gate budget (None: the line's `pipeline.gate_ms`); a part gets the budget of
    the recipe active when it is seen.
    """

    name: str
    detectors: list[Detector]
    thresholds: ThresholdsHolder
    model: dict[str, Any] = field(default_factory=dict)
    alarm: str | None = None
    reference: FrameRegistrar | None = None
    gate_ms: float | None = None

    @property
    def names(self) -> dict[int, str]:
        return self.detectors[0].names

    @property
    def sha256(self) -> str:
        return self.detectors[0].sha256
