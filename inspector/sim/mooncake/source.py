"""The mooncake line as a frame source: parts 0, 1, 2, ... with their ground truth, paced when asked."""

from __future__ import annotations

from typing import Any

import numpy as np

from inspector.sim.line import PartTruth
from inspector.sim.mooncake.line import LineConfig, MooncakeLine
from inspector.sim.mooncake.scene import BASE_SIZE
from inspector.sim.source import LineSource
from inspector.sources import Pacer

__all__ = ["MooncakeSource"]


class MooncakeSource(LineSource):
    """The mooncake line as a `FrameSource`: parts 0, 1, 2, ... with their `PartTruth` (as `SyntheticSource`).

    config: anything with `seed`, `defect_rate` and `size` (e.g. `inspector.config.SyntheticConfig`), or None;
        `seed`, `defect_rate`, `size` given here override it (defaults 0, 0.3, 384).
    fps: parts per second; `read()` returns each part at its slot on a fixed schedule (like a conveyor, by
        `inspector.sources.Pacer`): generated first, then held until its slot. When the reader falls behind by
        more than one slot, the schedule restarts from now instead of bursting. None: as fast as parts are made.
    limit: stop (read returns None) after this many parts; None runs forever.
    A reopen continues with the next part, as a camera would after a reconnect.
    """

    line: MooncakeLine

    def __init__(
        self,
        config: LineConfig | None = None,
        fps: float | None = None,
        limit: int | None = None,
        *,
        seed: int | None = None,
        defect_rate: float | None = None,
        size: int | None = None,
        max_defects: int = 2,
    ) -> None:
        if fps is not None and fps <= 0:
            raise ValueError(f"fps must be positive, got {fps}")

        def pick(value: Any, key: str, default: Any) -> Any:
            if value is not None:
                return value
            return getattr(config, key) if config is not None else default

        line = MooncakeLine(
            seed=pick(seed, "seed", 0),
            defect_rate=pick(defect_rate, "defect_rate", 0.3),
            size=pick(size, "size", BASE_SIZE),
            max_defects=max_defects,
        )
        rate = f"{fps:g} parts/s" if fps else "unpaced"
        description = (
            f"synthetic mooncake line (seed {line.seed}, defect rate {line.defect_rate:g}, {line.size} px, {rate})"
        )
        super().__init__(line, limit, description)
        self.fps = fps
        self._pacer = Pacer(fps) if fps else None

    def open(self) -> None:
        super().open()
        if self._pacer is not None:
            self._pacer.restart(now=True)

    def read(self) -> tuple[np.ndarray, PartTruth] | None:
        """Next part: ((H, W, 3) uint8 BGR image, its `PartTruth`), at its slot; None after `limit` parts."""
        item = super().read()
        if item is not None and self._pacer is not None:
            self._pacer.wait()  # generate first, then wait: the part appears on time, not one generation late
        return item
