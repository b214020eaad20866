"""The mooncake line: part k of a seed (`MooncakeLine.make_part`), the part (`MooncakePart`) and the class names.

Each part draws from three streams of its (seed, index): the cake (0), the defects (1) and the camera noise (2),
so the same part is the same cake at any defect rate and in any order of making.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from inspector.sim.line import Box, SyntheticPart, check_line_args, paint_defects
from inspector.sim.mooncake.defects import (
    BLURRED_IMPRINT,
    BURNT,
    CRACK,
    FOREIGN_SPECK,
    MISSHAPEN,
    UNDERBAKED,
    DefectPainter,
)
from inspector.sim.mooncake.render import initial_state, render
from inspector.sim.mooncake.scene import BASE_SIZE, make_scene

__all__ = ["LABEL_MARGIN", "MOONCAKE_NAMES", "LineConfig", "MooncakeLine", "MooncakePart"]

MOONCAKE_NAMES = {
    CRACK: "crack",
    BURNT: "burnt",
    MISSHAPEN: "misshapen",
    BLURRED_IMPRINT: "blurred_imprint",
    FOREIGN_SPECK: "foreign_speck",
    UNDERBAKED: "underbaked",
}
_NUM_CLASSES = len(MOONCAKE_NAMES)
LABEL_MARGIN = 3  # px added on each side of a tight box in labels


@dataclass(frozen=True, slots=True)
class MooncakePart(SyntheticPart):
    """One generated mooncake: `SyntheticPart`'s fields, with mooncake class names and label margin.

    image: (H, W, 3) uint8 BGR, the camera's view. template: the same part without defects (same light, same noise).
    boxes: (n, 4) float32 xyxy px, tight (half-open) around the pixels each defect changed beyond `DIFF_THRESHOLD`.
    class_ids: (n,) int64 in 0..5 (`MOONCAKE_NAMES`).
    """

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(MOONCAKE_NAMES[int(c)] for c in self.class_ids)

    def label_boxes(self, margin: float = LABEL_MARGIN) -> np.ndarray:
        """(n, 4) float32: `boxes` grown by `margin` px a side and clipped to the image."""
        return SyntheticPart.label_boxes(self, margin)

    def yolo_label(self, margin: float = LABEL_MARGIN) -> str:
        """Ultralytics label text: one `class cx cy w h` line per defect, normalised to [0, 1]."""
        return SyntheticPart.yolo_label(self, margin)


class LineConfig(Protocol):
    """What a line needs from a config (`inspector.config.SyntheticConfig` has it)."""

    seed: int
    defect_rate: float
    size: int


class MooncakeLine:
    """A deterministic stream of synthetic mooncakes.

    seed: the line's seed (any int); part `index` of a seed is always the same part.
    defect_rate: probability in [0, 1] that a part carries defects.
    size: square image size in px; the cake and its features scale with it (designed at 384).
    max_defects: a defective part carries 1..max_defects defects.
    """

    def __init__(self, seed: int = 0, defect_rate: float = 0.3, size: int = BASE_SIZE, max_defects: int = 2) -> None:
        check_line_args(defect_rate, size, max_defects, min_size=96)
        self.seed, self.defect_rate, self.size, self.max_defects = seed, defect_rate, size, max_defects

    @classmethod
    def from_config(cls, config: LineConfig, max_defects: int = 2) -> MooncakeLine:
        return cls(seed=config.seed, defect_rate=config.defect_rate, size=config.size, max_defects=max_defects)

    def _rng(self, index: int, stream: int) -> np.random.Generator:
        # A salt keeps mooncake part i of seed s unrelated to PCB part i of seed s.
        words = [0x4D43414B, self.seed & 0xFFFFFFFFFFFFFFFF, index & 0xFFFFFFFFFFFFFFFF, stream]
        return np.random.default_rng(words)

    def make_part(self, index: int) -> MooncakePart:
        """Generate part `index` (deterministic by seed and index; 30-80 ms of CPU at 384x384 on a busy 2-core VM)."""
        # Separate streams: the cake (0) and the camera noise (2) do not depend on the defects (1).
        rng = self._rng(index, 0)
        scene = make_scene(rng, self._rng(index, 2), self.size)
        state = initial_state(rng, scene)
        template = render(scene, state)
        image = template
        rng = self._rng(index, 1)
        boxes: list[Box] = []
        classes: list[int] = []
        if rng.random() < self.defect_rate:
            # A class that finds no place (e.g. after a whole-cake defect) hands over to the others.
            painter = DefectPainter(rng, scene, state, template)
            boxes, classes = paint_defects(rng, self.max_defects, _NUM_CLASSES, painter.paint)
            image = painter.image
        return MooncakePart(
            index=index,
            image=image,
            template=template,
            boxes=np.array(boxes, np.float32).reshape(-1, 4),
            class_ids=np.array(classes, np.int64),
        )
