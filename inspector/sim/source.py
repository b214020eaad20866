"""The synthetic line as a frame source: parts 0, 1, 2, ... with their ground truth, as fast as they are made.

Pacing is not this module's job: `inspector.sources.Paced(source, fps, read_first=True)` puts the parts on a
conveyor's schedule (`open_source` and the demo do).
"""

from __future__ import annotations

import numpy as np

from inspector.config import SyntheticConfig
from inspector.sim.jitter import Jitter
from inspector.sim.line import PartMaker, PartTruth, SyntheticLine
from inspector.types import SourceError

__all__ = ["LineSource", "SyntheticSource"]


class LineSource:
    """A line of parts (`PartMaker`) as a `FrameSource`: parts 0, 1, 2, ... with their `PartTruth`, unpaced.

    limit: stop (read returns None) after this many parts; None runs forever.
    A reopen continues with the next part, as a camera would after a reconnect.
    """

    def __init__(self, line: PartMaker, limit: int | None, description: str) -> None:
        if limit is not None and limit < 0:
            raise ValueError(f"limit must be >= 0, got {limit}")
        self.line = line
        self.limit = limit
        self.index = 0
        self._open = False
        self.description = description

    def open(self) -> None:
        self._open = True

    def read(self) -> tuple[np.ndarray, PartTruth] | None:
        """Next part: ((H, W, 3) uint8 BGR image, its `PartTruth`), or None after `limit` parts."""
        if not self._open:
            raise SourceError("synthetic source read before open()")
        if self.limit is not None and self.index >= self.limit:
            return None
        part = self.line.make_part(self.index)
        self.index += 1
        return part.image, part.truth()

    def close(self) -> None:
        self._open = False


class SyntheticSource(LineSource):
    """The synthetic PCB line as a `FrameSource` (a `LineSource` of `SyntheticLine.from_config(config)`).

    board_seed, jitter: one product and placement jitter, as `SyntheticLine`'s (its `reference()` is the recipe's);
    by default the config's (`board_seed`, and `Jitter()` when `jitter` is set).
    """

    line: SyntheticLine

    def __init__(
        self,
        config: SyntheticConfig,
        limit: int | None = None,
        board_seed: int | None = None,
        jitter: Jitter | None = None,
    ) -> None:
        board_seed = config.board_seed if board_seed is None else board_seed
        jitter = Jitter() if jitter is None and config.jitter else jitter
        extra = "" if board_seed is None else f", board {board_seed}"
        extra += "" if jitter is None else ", jitter"
        description = (
            f"synthetic PCB line (seed {config.seed}, defect rate {config.defect_rate:g}, {config.size} px{extra})"
        )
        super().__init__(SyntheticLine.from_config(config, board_seed, jitter), limit, description)
