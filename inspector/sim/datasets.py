"""Dataset writers: synthetic parts on disk, as a YOLO dataset (`write_dataset`) or a labelled folder with a truth
manifest (`write_folder`, what `FolderSource` replays with its ground truth). `write_line_dataset` and
`write_line_folder` write any line's parts (the mooncake line's writers use them too).

A line of one product (`board_seed`) also gets its golden reference, OUT/reference.png; a jittered line's manifest
records each part's placement. Without those options the output is what it always was, byte for byte."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from inspector.dataset import DEEPPCB_NAMES, write_data_yaml
from inspector.sim.jitter import Jitter
from inspector.sim.line import LABEL_MARGIN, PartMaker, SyntheticLine

__all__ = ["REFERENCE_FILE", "imwrite", "write_dataset", "write_folder", "write_line_dataset", "write_line_folder"]

REFERENCE_FILE = "reference.png"  # a one-product line's golden reference, beside its parts


def _product_line(
    out: Path,
    meta: dict[str, Any],
    seed: int,
    defect_rate: float,
    size: int,
    board_seed: int | None,
    jitter: Jitter | None,
) -> SyntheticLine:
    """The line to write, with `board_seed` and `jitter` in `meta` (only when set) and the reference in OUT."""
    line = SyntheticLine(seed=seed, defect_rate=defect_rate, size=size, board_seed=board_seed, jitter=jitter)
    if board_seed is not None:
        meta["board_seed"] = board_seed
        meta["reference"] = REFERENCE_FILE
        out.mkdir(parents=True, exist_ok=True)
        imwrite(out / REFERENCE_FILE, line.reference())
    if jitter is not None:
        meta["jitter"] = jitter.to_dict()
    return line


def write_dataset(
    out: Path,
    n: int,
    seed: int = 0,
    defect_rate: float = 0.5,
    val_fraction: float = 0.2,
    size: int = 640,
    margin: float = LABEL_MARGIN,
    image_ext: str = "jpg",
    board_seed: int | None = None,
    jitter: Jitter | None = None,
) -> dict[str, int]:
    """Write `n` synthetic parts as an Ultralytics YOLO dataset, in the layout of `inspector.dataset`.

    OUT/images/{train,val}/syn_<index>.<ext>, OUT/labels/{train,val}/syn_<index>.txt (boxes grown by `margin` px,
    DeepPCB style), OUT/templates/{train,val}/syn_<index>.<ext> (defect-free), OUT/data.yaml (names = DeepPCB's
    six), OUT/split.json. The split is a seeded shuffle of indices, like `import_deeppcb`; `val_fraction=1` puts
    every part in `val` (a set for `inspector eval` / `inspector calibrate`). board_seed, jitter: as
    `SyntheticLine`'s; with `board_seed` also OUT/reference.png (every template is that image). Returns counts.
    """
    meta: dict[str, Any] = {
        "generator": "inspector.sim",
        "seed": seed,
        "defect_rate": defect_rate,
        "size": size,
        "margin": margin,
    }
    line = _product_line(out, meta, seed, defect_rate, size, board_seed, jitter)
    return write_line_dataset(out, line, n, seed, val_fraction, margin, image_ext, stem="syn", meta=meta)


def write_line_dataset(
    out: Path,
    line: PartMaker,
    n: int,
    seed: int,
    val_fraction: float,
    margin: float,
    image_ext: str,
    *,
    stem: str,
    meta: dict[str, Any],
    names: dict[int, str] | None = None,
) -> dict[str, int]:
    """Write parts 0..n-1 of `line` as a YOLO dataset: files `<stem>_<index>`, the split a shuffle seeded by `seed`,
    `meta` first in split.json. names: data.yaml's class names, also counted per class in the result (None:
    DeepPCB's, not counted). Returns counts: train, val, boxes, defective (and per class)."""
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    if not 0.0 <= val_fraction <= 1.0:
        raise ValueError(f"val_fraction must be in [0, 1], got {val_fraction}")
    order = list(range(n))
    random.Random(seed).shuffle(order)
    n_val = round(n * val_fraction)
    val = set(order[:n_val])
    counts = {"train": 0, "val": 0, "boxes": 0, "defective": 0} | {name: 0 for name in (names or {}).values()}
    split_of: dict[str, list[str]] = {"train": [], "val": []}
    for split in ("train", "val"):
        for sub in ("images", "labels", "templates"):
            (out / sub / split).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        part = line.make_part(i)
        split = "val" if i in val else "train"
        name = f"{stem}_{i:06d}"
        imwrite(out / "images" / split / f"{name}.{image_ext}", part.image)
        imwrite(out / "templates" / split / f"{name}.{image_ext}", part.template)
        (out / "labels" / split / f"{name}.txt").write_text(part.yolo_label(margin))
        split_of[split].append(name)
        counts[split] += 1
        counts["boxes"] += len(part.boxes)
        counts["defective"] += int(part.defective)
        if names is not None:
            for class_name in part.class_names:
                counts[class_name] += 1
    write_data_yaml(out, DEEPPCB_NAMES if names is None else names)
    (out / "split.json").write_text(json.dumps({**meta, "val_fraction": val_fraction, **split_of}, indent=1))
    return counts


def write_folder(
    out: Path,
    n: int,
    seed: int = 0,
    defect_rate: float = 0.3,
    size: int = 640,
    image_ext: str = "png",
    start: int = 0,
    board_seed: int | None = None,
    jitter: Jitter | None = None,
) -> Path:
    """Write parts `start..start+n-1` as OUT/good/part_<index>.<ext> and OUT/bad/part_<index>.<ext>.

    The manifest OUT/truth.json holds `{generator, seed, defect_rate, size, parts: [{file, **PartTruth.to_dict()}]}`
    with `file` relative to OUT, in index order. PNG by default: lossless, so the pixels are the truth's.
    board_seed, jitter: as `SyntheticLine`'s; with `board_seed` the product's golden reference is OUT/reference.png
    (the manifest's `reference`); with `jitter` each part's record has its `placement` (`Placement.to_dict`).
    Returns the manifest's path.
    """
    meta: dict[str, Any] = {"generator": "inspector.sim", "seed": seed, "defect_rate": defect_rate, "size": size}
    line = _product_line(out, meta, seed, defect_rate, size, board_seed, jitter)
    return write_line_folder(out, line, n, image_ext, start, meta)


def write_line_folder(out: Path, line: PartMaker, n: int, image_ext: str, start: int, meta: dict[str, Any]) -> Path:
    """Write parts `start..start+n-1` of `line` into OUT/good/ and OUT/bad/, and OUT/truth.json (`meta` first, then
    `parts`). Returns the manifest's path."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    (out / "good").mkdir(parents=True, exist_ok=True)
    (out / "bad").mkdir(parents=True, exist_ok=True)
    parts = []
    for i in range(start, start + n):
        part = line.make_part(i)
        rel = f"{'bad' if part.defective else 'good'}/part_{i:06d}.{image_ext}"
        imwrite(out / rel, part.image)
        record = {"file": rel, **part.truth().to_dict()}
        if part.placement is not None:
            record["placement"] = part.placement.to_dict()
        parts.append(record)
    manifest = out / "truth.json"
    manifest.write_text(json.dumps({**meta, "parts": parts}, indent=1))
    return manifest


def imwrite(path: Path, image: np.ndarray) -> None:
    """Write `image` to `path` (JPEG at quality 95); OSError when OpenCV cannot."""
    params = [cv2.IMWRITE_JPEG_QUALITY, 95] if path.suffix.lower() in {".jpg", ".jpeg"} else []
    if not cv2.imwrite(str(path), image, params):
        raise OSError(f"{path}: could not write the image")
