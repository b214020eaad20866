"""The synthetic production line: part k of a seed, its image, template, boxes and ground truth.

A part is defect-free with probability `1 - defect_rate`; otherwise it carries 1..`max_defects` defects of the six
DeepPCB classes (`inspector.sim.defects`) on a board from `inspector.sim.board`.

Boxes: `SyntheticPart.boxes` are tight around the pixels each defect changed (image vs template); DeepPCB's own
annotations are looser, the defect plus about 10 px a side (measured on its 1,000 training pairs: median box 20 px
wider and taller than the changed pixels), so datasets and ground truth also carry `label_boxes` with that margin,
which is what a detector trained on DeepPCB draws.

Everything is deterministic by (seed, part index): part 7 of seed 0 is the same image on every machine and run,
whatever order parts are made in.

One product with a golden reference (`board_seed`): every part is the same board design, drawn from `board_seed`
alone, and `SyntheticLine.reference()` is its defect-free render (the recipe's reference image). Placement jitter
(`jitter`, `inspector.sim.jitter`): each part is seen shifted by a few px, turned by up to about a degree and under
drifting light, its boxes carried along; `SyntheticPart.placement` says how. Either option draws the board with a
margin around the view (so a moved view never shows an edge); with neither, parts are exactly what they always were.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import cv2
import numpy as np

from inspector.config import SyntheticConfig
from inspector.dataset import DEEPPCB_NAMES
from inspector.sim.board import Board, layout
from inspector.sim.defects import DefectPainter
from inspector.sim.jitter import Jitter, Placement, board_margin

__all__ = [
    "LABEL_MARGIN",
    "Box",
    "PartMaker",
    "PartTruth",
    "SyntheticLine",
    "SyntheticPart",
    "check_line_args",
    "paint_defects",
]

LABEL_MARGIN = 10  # px added on each side of a tight box to match DeepPCB's annotation style

_NUM_CLASSES = len(DEEPPCB_NAMES)


Box = tuple[int, int, int, int]  # x0, y0, x1, y1 px, half-open


@dataclass(frozen=True, slots=True)
class PartTruth:
    """Ground truth of one synthetic part, as carried with its frame.

    boxes: (n, 4) float32 xyxy px, tight around the pixels each defect changed.
    label_boxes: (n, 4) float32 xyxy px, `boxes` grown by `LABEL_MARGIN` and clipped: DeepPCB's annotation style.
    class_ids: (n,) int64 in 0..5 (`DEEPPCB_NAMES`); class_names the same as names.
    """

    index: int
    defective: bool
    boxes: np.ndarray
    label_boxes: np.ndarray
    class_ids: np.ndarray
    class_names: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: `{index, defective, defects: [{class_id, class_name, xyxy, label_xyxy}]}`."""
        return {
            "index": self.index,
            "defective": self.defective,
            "defects": [
                {
                    "class_id": int(c),
                    "class_name": name,
                    "xyxy": [float(v) for v in box],
                    "label_xyxy": [float(v) for v in label],
                }
                for box, label, c, name in zip(
                    self.boxes, self.label_boxes, self.class_ids, self.class_names, strict=True
                )
            ],
        }


@dataclass(frozen=True, slots=True)
class SyntheticPart:
    """One generated part.

    image: (H, W, 3) uint8 BGR, the inspected scan (binary: `COPPER` or `SUBSTRATE` in every channel).
    template: (H, W, 3) uint8 BGR, the same part without defects (DeepPCB's `_temp` image).
    boxes: (n, 4) float32 xyxy px, each tight around the pixels its defect changed (inclusive pixel extents
        as half-open boxes: a defect covering pixel columns 10..19 has x1=10, x2=20).
    class_ids: (n,) int64, DeepPCB class of each box.
    placement: how the part lies in the view relative to `template` when its line jitters (`image` is
        `placement.apply` of the defective board; `boxes` hold the seen pixels each defect can change), else None
        (`image` and `template` share their pixel grid).
    """

    index: int
    image: np.ndarray
    template: np.ndarray
    boxes: np.ndarray
    class_ids: np.ndarray
    placement: Placement | None = None

    @property
    def defective(self) -> bool:
        return len(self.boxes) > 0

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(DEEPPCB_NAMES[int(c)] for c in self.class_ids)

    def label_boxes(self, margin: float = LABEL_MARGIN) -> np.ndarray:
        """(n, 4) float32: `boxes` grown by `margin` px a side and clipped to the image (DeepPCB style)."""
        h, w = self.image.shape[:2]
        grown = self.boxes + np.array([-margin, -margin, margin, margin], np.float32)
        return np.clip(grown, 0, [w, h, w, h]).astype(np.float32)

    def truth(self) -> PartTruth:
        return PartTruth(
            index=self.index,
            defective=self.defective,
            boxes=self.boxes.copy(),
            label_boxes=self.label_boxes(),
            class_ids=self.class_ids.copy(),
            class_names=self.class_names,
        )

    def yolo_label(self, margin: float = LABEL_MARGIN) -> str:
        """Ultralytics label text: one `class cx cy w h` line per defect, normalised to [0, 1]."""
        h, w = self.image.shape[:2]
        rows = []
        for (x1, y1, x2, y2), c in zip(self.label_boxes(margin), self.class_ids, strict=True):
            rows.append(
                f"{int(c)} {(x1 + x2) / 2 / w:.6f} {(y1 + y2) / 2 / h:.6f} {(x2 - x1) / w:.6f} {(y2 - y1) / h:.6f}"
            )
        return "\n".join(rows) + ("\n" if rows else "")


class PartMaker(Protocol):
    """A line of parts: what the frame sources and the dataset writers need (`SyntheticLine`, `MooncakeLine`)."""

    def make_part(self, index: int) -> SyntheticPart: ...


def check_line_args(defect_rate: float, size: int, max_defects: int, min_size: int) -> None:
    """ValueError unless `defect_rate` is in [0, 1], `size` at least `min_size` px and `max_defects` at least 1."""
    if not 0.0 <= defect_rate <= 1.0:
        raise ValueError(f"defect_rate must be in [0, 1], got {defect_rate}")
    if size < min_size:
        raise ValueError(f"size must be at least {min_size} px, got {size}")
    if max_defects < 1:
        raise ValueError(f"max_defects must be at least 1, got {max_defects}")


def paint_defects(
    rng: np.random.Generator, max_defects: int, num_classes: int, paint: Callable[[int], Box | None]
) -> tuple[list[Box], list[int]]:
    """Paint 1..`max_defects` defects of classes drawn uniformly; a class that finds no place (`paint` returns
    None) hands over to the others, in an order drawn once. Returns the boxes and their classes."""
    boxes: list[Box] = []
    classes: list[int] = []
    want = int(rng.integers(1, max_defects + 1))
    order = rng.permutation(num_classes).tolist()
    cls_seq = [int(rng.integers(0, num_classes)) for _ in range(want)]
    for cls in cls_seq:
        for candidate in [cls, *[c for c in order if c != cls]]:
            box = paint(candidate)
            if box is not None:
                boxes.append(box)
                classes.append(candidate)
                break
    return boxes, classes


@dataclass(frozen=True, slots=True)
class _Canvas:
    """A part's board before placement: the defect-free render of the view and beyond, and where the view lies.

    render: (size + 2 margin, same) uint8 grey; the view is render[margin:margin + size, margin:margin + size].
    traces: the board's trace centre lines in view coordinates (what the defect painter works on).
    """

    render: np.ndarray
    margin: int
    traces: list[tuple[np.ndarray, int]]

    def view(self) -> np.ndarray:
        m = self.margin
        return self.render[m : self.render.shape[0] - m, m : self.render.shape[1] - m]

    @classmethod
    def of(cls, board: Board, margin: int) -> _Canvas:
        shift = np.array([margin, margin], np.int32)
        return cls(board.render(), margin, [(pts - shift, width) for pts, width in board.traces])


class SyntheticLine:
    """A deterministic stream of synthetic PCB parts.

    seed: the line's seed (any int); part `index` of a seed is always the same part.
    defect_rate: probability in [0, 1] that a part carries defects.
    size: square scan size in px; feature sizes stay at DeepPCB's ~48 px/mm, so a larger size is a larger crop.
    max_defects: a defective part carries 1..max_defects defects (DeepPCB's scans carry 4-10, 5th-95th
        percentile, median 7; a production line's bad part usually has few, so the default is 4).
    board_seed: one product: every part is the board drawn from this seed (whatever `seed`), and `reference()`
        is its defect-free render. None: each part is its own board (its template is its reference).
    jitter: place each part with this jitter (`Jitter()`: a few px, up to 1 degree, drifting light, noise);
        None: parts lie exactly on their template's pixel grid.
    """

    def __init__(
        self,
        seed: int = 0,
        defect_rate: float = 0.3,
        size: int = 640,
        max_defects: int = 4,
        board_seed: int | None = None,
        jitter: Jitter | None = None,
    ) -> None:
        check_line_args(defect_rate, size, max_defects, min_size=64)
        if jitter is not None:
            jitter.check_fits(size)
        self.seed, self.defect_rate, self.size, self.max_defects = seed, defect_rate, size, max_defects
        self.board_seed, self.jitter = board_seed, jitter
        self._product: _Canvas | None = None  # the board_seed's board, drawn once

    @classmethod
    def from_config(
        cls, config: SyntheticConfig, board_seed: int | None = None, jitter: Jitter | None = None
    ) -> SyntheticLine:
        return cls(
            seed=config.seed, defect_rate=config.defect_rate, size=config.size, board_seed=board_seed, jitter=jitter
        )

    def _rng(self, index: int, stream: int) -> np.random.Generator:
        # SeedSequence wants non-negative words: fold the (possibly negative) seed into 64 bits.
        return np.random.default_rng([self.seed & 0xFFFFFFFFFFFFFFFF, index & 0xFFFFFFFFFFFFFFFF, stream])

    def _canvas(self, index: int) -> _Canvas:
        """Part `index`'s board: the one product board with `board_seed`, else its own (stream 0 of its index)."""
        if self.board_seed is None and self.jitter is None:
            return _Canvas.of(layout(self._rng(index, 0), self.size), 0)  # today's parts, pixel for pixel
        margin = board_margin(self.size)
        if self.board_seed is None:
            return _Canvas.of(layout(self._rng(index, 0), self.size + 2 * margin), margin)
        if self._product is None:
            # A salt keeps board K unrelated to the part boards of seed K.
            rng = np.random.default_rng([0x424F415244, self.board_seed & 0xFFFFFFFFFFFFFFFF])
            self._product = _Canvas.of(layout(rng, self.size + 2 * margin), margin)
        return self._product

    def reference(self) -> np.ndarray:
        """(size, size, 3) uint8 BGR: the product's golden reference, its board without defects or jitter.

        ValueError without `board_seed` (then every part is its own board: its `template` is its reference).
        """
        if self.board_seed is None:
            raise ValueError("a reference needs board_seed: without it each part is its own board")
        return cv2.cvtColor(self._canvas(0).view(), cv2.COLOR_GRAY2BGR)

    def placement(self, index: int) -> Placement | None:
        """Part `index`'s placement (stream 2 of its index), or None without jitter."""
        return None if self.jitter is None else self.jitter.draw(self._rng(index, 2), self.size)

    def _paint(self, index: int) -> tuple[_Canvas, np.ndarray, list[Box], list[int]]:
        """The part's board, the whole render with its defects painted in the view, their boxes and classes."""
        canvas = self._canvas(index)
        render = canvas.render.copy()
        rng = self._rng(index, 1)
        boxes: list[Box] = []
        classes: list[int] = []
        if rng.random() < self.defect_rate:
            # Painted on a copy of the view: defects stay inside it, whatever board lies beyond.
            img = canvas.view().copy()
            # A class that finds no place on this board (e.g. no trace for an open) hands over to the others.
            painter = DefectPainter(rng, img, canvas.traces)
            boxes, classes = paint_defects(rng, self.max_defects, _NUM_CLASSES, painter.paint)
            m = canvas.margin
            render[m : m + self.size, m : m + self.size] = img
        return canvas, render, boxes, classes

    def make_unplaced(self, index: int) -> SyntheticPart:
        """Part `index` where the design puts it: its defects on its board, no jitter (`make_part` without it)."""
        canvas, render, boxes, classes = self._paint(index)
        m = canvas.margin
        return SyntheticPart(
            index=index,
            image=cv2.cvtColor(render[m : m + self.size, m : m + self.size], cv2.COLOR_GRAY2BGR),
            template=cv2.cvtColor(canvas.view(), cv2.COLOR_GRAY2BGR),
            boxes=np.array(boxes, np.float32).reshape(-1, 4),
            class_ids=np.array(classes, np.int64),
        )

    def make_part(self, index: int) -> SyntheticPart:
        """Generate part `index` (deterministic by seed and index; a few ms at 640x640)."""
        # Separate streams: whether a part is defective (and what) does not change its board, so the same
        # board appears good at defect_rate 0 and bad at defect_rate 1; nor does it change the placement.
        placement = self.placement(index)
        if placement is None:
            return self.make_unplaced(index)
        canvas, render, boxes, classes = self._paint(index)
        seen_boxes, kept = placement.map_boxes(np.array(boxes, np.float32).reshape(-1, 4))
        return SyntheticPart(
            index=index,
            image=cv2.cvtColor(placement.apply(render, origin=canvas.margin), cv2.COLOR_GRAY2BGR),
            template=cv2.cvtColor(canvas.view(), cv2.COLOR_GRAY2BGR),
            boxes=seen_boxes,
            class_ids=np.array(classes, np.int64)[kept],
            placement=placement,
        )
