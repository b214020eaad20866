"""Mooncakes on disk: a YOLO dataset (`write_dataset`), a labelled folder with a truth manifest (`write_folder`),
and a contact sheet of parts with their boxes (`contact_sheet`)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from inspector.sim.datasets import write_line_dataset, write_line_folder
from inspector.sim.mooncake.defects import BLURRED_IMPRINT, BURNT, CRACK, FOREIGN_SPECK, MISSHAPEN, UNDERBAKED
from inspector.sim.mooncake.line import LABEL_MARGIN, MOONCAKE_NAMES, MooncakeLine, MooncakePart
from inspector.sim.mooncake.scene import BASE_SIZE

__all__ = ["contact_sheet", "write_dataset", "write_folder"]


def write_dataset(
    out: Path,
    n: int,
    seed: int = 0,
    defect_rate: float = 0.5,
    val_fraction: float = 0.2,
    size: int = BASE_SIZE,
    margin: float = LABEL_MARGIN,
    image_ext: str = "jpg",
    max_defects: int = 2,
) -> dict[str, int]:
    """Write `n` mooncakes as an Ultralytics YOLO dataset, in the layout of `inspector.sim.write_dataset`.

    OUT/images/{train,val}/cake_<index>.<ext>, OUT/labels/{train,val}/cake_<index>.txt (boxes grown by `margin`
    px), OUT/templates/{train,val}/cake_<index>.<ext> (defect-free), OUT/data.yaml (names = `MOONCAKE_NAMES`),
    OUT/split.json. The split is a seeded shuffle of indices; `val_fraction=1` puts every part in `val` (a set for
    `inspector eval` / `inspector calibrate`). Returns counts, with boxes per class.
    """
    line = MooncakeLine(seed=seed, defect_rate=defect_rate, size=size, max_defects=max_defects)
    meta = {
        "generator": "inspector.mooncake",
        "seed": seed,
        "defect_rate": defect_rate,
        "size": size,
        "margin": margin,
        "max_defects": max_defects,
    }
    return write_line_dataset(
        out, line, n, seed, val_fraction, margin, image_ext, stem="cake", meta=meta, names=MOONCAKE_NAMES
    )


def write_folder(
    out: Path,
    n: int,
    seed: int = 0,
    defect_rate: float = 0.3,
    size: int = BASE_SIZE,
    image_ext: str = "png",
    start: int = 0,
) -> Path:
    """Write parts `start..start+n-1` as OUT/good/part_<index>.<ext> and OUT/bad/part_<index>.<ext>.

    The manifest OUT/truth.json holds `{generator, seed, defect_rate, size, parts: [{file, **PartTruth.to_dict()}]}`
    with `file` relative to OUT, in index order (the folder source reads it as it reads `inspector.sim`'s).
    Returns the manifest's path.
    """
    line = MooncakeLine(seed=seed, defect_rate=defect_rate, size=size)
    meta = {"generator": "inspector.mooncake", "seed": seed, "defect_rate": defect_rate, "size": size}
    return write_line_folder(out, line, n, image_ext, start, meta)


_CLASS_COLOURS = {  # BGR, for contact sheets
    CRACK: (255, 0, 255),
    BURNT: (0, 0, 255),
    MISSHAPEN: (255, 255, 0),
    BLURRED_IMPRINT: (0, 255, 0),
    FOREIGN_SPECK: (255, 128, 0),
    UNDERBAKED: (0, 255, 255),
}


def contact_sheet(parts: list[MooncakePart], cols: int = 6, with_templates: bool = False) -> np.ndarray:
    """One BGR image: each part (and, if asked, its template beside it) with its tight boxes and class names."""
    if not parts:
        raise ValueError("no parts for a contact sheet")
    tiles = []
    for part in parts:
        tile = part.image.copy()
        for (x0, y0, x1, y1), c in zip(part.boxes.astype(int), part.class_ids, strict=True):
            colour = _CLASS_COLOURS[int(c)]
            cv2.rectangle(tile, (x0 - 1, y0 - 1), (x1, y1), colour, 1)
            cv2.putText(tile, MOONCAKE_NAMES[int(c)], (x0, max(10, y0 - 3)), cv2.FONT_HERSHEY_SIMPLEX, 0.4, colour, 1)
        caption = f"#{part.index} " + ("bad" if part.defective else "good")
        cv2.putText(tile, caption, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1)
        if with_templates:
            tile = np.hstack([tile, part.template])
        tiles.append(tile)
    h, w = tiles[0].shape[:2]
    rows = -(-len(tiles) // cols)
    sheet = np.full((rows * (h + 4), min(cols, len(tiles)) * (w + 4), 3), 255, np.uint8)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, cols)
        sheet[r * (h + 4) : r * (h + 4) + h, c * (w + 4) : c * (w + 4) + w] = tile
    return sheet
