"""Dataset writers: synthetic parts on disk, as a YOLO dataset (`write_dataset`) or a labelled folder with a truth
manifest (`write_folder`, what `FolderSource` replays with its ground truth)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import cv2
import numpy as np

from inspector.dataset import write_data_yaml
from inspector.sim.line import LABEL_MARGIN, SyntheticLine

__all__ = ["write_dataset", "write_folder"]


def write_dataset(
    out: Path,
    n: int,
    seed: int = 0,
    defect_rate: float = 0.5,
    val_fraction: float = 0.2,
    size: int = 640,
    margin: float = LABEL_MARGIN,
    image_ext: str = "jpg",
) -> dict[str, int]:
    """Write `n` synthetic parts as an Ultralytics YOLO dataset, in the layout of `inspector.dataset`.

    OUT/images/{train,val}/syn_<index>.<ext>, OUT/labels/{train,val}/syn_<index>.txt (boxes grown by `margin` px,
    DeepPCB style), OUT/templates/{train,val}/syn_<index>.<ext> (defect-free), OUT/data.yaml (names = DeepPCB's
    six), OUT/split.json. The split is a seeded shuffle of indices, like `import_deeppcb`; `val_fraction=1` puts
    every part in `val` (a set for `inspector eval` / `inspector calibrate`). Returns counts.
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    if not 0.0 <= val_fraction <= 1.0:
        raise ValueError(f"val_fraction must be in [0, 1], got {val_fraction}")
    line = SyntheticLine(seed=seed, defect_rate=defect_rate, size=size)
    order = list(range(n))
    random.Random(seed).shuffle(order)
    n_val = round(n * val_fraction)
    val = set(order[:n_val])
    counts = {"train": 0, "val": 0, "boxes": 0, "defective": 0}
    split_of: dict[str, list[str]] = {"train": [], "val": []}
    for split in ("train", "val"):
        for sub in ("images", "labels", "templates"):
            (out / sub / split).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        part = line.make_part(i)
        split = "val" if i in val else "train"
        stem = f"syn_{i:06d}"
        _imwrite(out / "images" / split / f"{stem}.{image_ext}", part.image)
        _imwrite(out / "templates" / split / f"{stem}.{image_ext}", part.template)
        (out / "labels" / split / f"{stem}.txt").write_text(part.yolo_label(margin))
        split_of[split].append(stem)
        counts[split] += 1
        counts["boxes"] += len(part.boxes)
        counts["defective"] += int(part.defective)
    write_data_yaml(out)
    meta = {"generator": "inspector.sim", "seed": seed, "defect_rate": defect_rate, "size": size, "margin": margin}
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
) -> Path:
    """Write parts `start..start+n-1` as OUT/good/part_<index>.<ext> and OUT/bad/part_<index>.<ext>.

    The manifest OUT/truth.json holds `{generator, seed, defect_rate, size, parts: [{file, **PartTruth.to_dict()}]}`
    with `file` relative to OUT, in index order. PNG by default: lossless, so the pixels are the truth's.
    Returns the manifest's path.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    line = SyntheticLine(seed=seed, defect_rate=defect_rate, size=size)
    (out / "good").mkdir(parents=True, exist_ok=True)
    (out / "bad").mkdir(parents=True, exist_ok=True)
    parts = []
    for i in range(start, start + n):
        part = line.make_part(i)
        rel = f"{'bad' if part.defective else 'good'}/part_{i:06d}.{image_ext}"
        _imwrite(out / rel, part.image)
        parts.append({"file": rel, **part.truth().to_dict()})
    manifest = out / "truth.json"
    meta = {"generator": "inspector.sim", "seed": seed, "defect_rate": defect_rate, "size": size}
    manifest.write_text(json.dumps({**meta, "parts": parts}, indent=1))
    return manifest


def _imwrite(path: Path, image: np.ndarray) -> None:
    params = [cv2.IMWRITE_JPEG_QUALITY, 95] if path.suffix.lower() in {".jpg", ".jpeg"} else []
    if not cv2.imwrite(str(path), image, params):
        raise OSError(f"{path}: could not write the image")
