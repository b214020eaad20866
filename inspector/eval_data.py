"""The images of one evaluation split: `load_data` resolves DATA (an Ultralytics data.yaml with our `templates_<split>`
key, or a YOLO folder) into its images, labels and defect-free templates, and says whether the images are reference
composites (`inspector_input`); `load_thresholds` reads deployed thresholds. `inspector eval` and `inspector
calibrate` (`inspector.evaluate`) and `inspector dataset mix` read splits with it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from inspector.reference import dataset_input_kind
from inspector.types import Thresholds

__all__ = ["IMAGE_SUFFIXES", "EvalData", "load_data", "load_thresholds"]

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}


@dataclass(slots=True)
class EvalData:
    """The images of one split.

    images: the inspected images; labels: per image an (m, 5) float32 array `class cx cy w h` normalised to
    [0, 1] (YOLO format; (0, 5) when the image has no label file or an empty one); templates: defect-free images;
    input_kind: the data.yaml's `inspector_input` (`reference-diff`: the images are reference composites).
    """

    names: dict[int, str]
    images: list[Path]
    labels: list[np.ndarray]
    templates: list[Path]
    source: str
    input_kind: str | None = None


def _image_files(root: Path) -> list[Path]:
    if root.suffix == ".txt":  # an Ultralytics image list, paths relative to the list's folder
        return [(root.parent / line.strip()).resolve() for line in root.read_text().splitlines() if line.strip()]
    if root.is_file() and root.suffix.lower() in IMAGE_SUFFIXES:
        return [root]
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such folder")
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)


def _label_path(image: Path) -> Path:
    """Ultralytics' rule: the last `images` folder in the path becomes `labels`, the suffix `.txt`."""
    parts = list(image.parts)
    for i in range(len(parts) - 1, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            return Path(*parts).with_suffix(".txt")
    return image.with_suffix(".txt")


def _read_labels(path: Path, nc: int) -> np.ndarray:
    if not path.exists():
        return np.zeros((0, 5), np.float32)
    rows = [line.split() for line in path.read_text().splitlines() if line.strip()]
    if not rows:
        return np.zeros((0, 5), np.float32)
    if any(len(r) != 5 for r in rows):
        raise ValueError(f"{path}: expected 'class cx cy w h' per line (detection labels)")
    labels = np.array(rows, dtype=np.float32)
    if labels[:, 0].min() < 0 or labels[:, 0].max() >= nc:
        raise ValueError(f"{path}: class id outside 0..{nc - 1}")
    return labels


def _names(raw: Any) -> dict[int, str]:
    if isinstance(raw, list):
        return dict(enumerate(str(n) for n in raw))
    if isinstance(raw, dict):
        return {int(k): str(v) for k, v in raw.items()}
    raise ValueError("data: 'names' must be a list or a mapping")


def load_data(data: Path, split: str = "val") -> EvalData:
    """Resolve DATA (data.yaml or YOLO folder) into the images, labels and defect-free templates of `split`."""
    data = Path(data)
    if data.is_dir() and (data / "data.yaml").exists():
        data = data / "data.yaml"
    if data.suffix in {".yaml", ".yml"}:
        spec = yaml.safe_load(data.read_text()) or {}
        if split not in spec:
            raise ValueError(f"{data}: no '{split}' entry")
        base = Path(spec.get("path") or ".")
        if not base.is_absolute():
            base = (data.parent / base).resolve()
        names = _names(spec.get("names"))
        entries = spec[split] if isinstance(spec[split], list) else [spec[split]]
        images = [p for entry in entries for p in _image_files(base / entry)]
        templates_key = spec.get(f"templates_{split}")
        templates = _image_files(base / templates_key) if templates_key else []
    elif data.is_dir():
        root = data / "images" / split
        if not root.is_dir():
            raise FileNotFoundError(f"{data}: no data.yaml and no images/{split} folder")
        names_file = data / "names.txt"
        if not names_file.exists():
            raise ValueError(f"{data}: a folder without data.yaml needs names.txt (one class name a line)")
        names = dict(enumerate(line.strip() for line in names_file.read_text().splitlines() if line.strip()))
        images = _image_files(root)
        templates = _image_files(data / "templates" / split) if (data / "templates" / split).is_dir() else []
    else:
        raise FileNotFoundError(f"{data}: not a data.yaml or a folder")
    if not images:
        raise ValueError(f"{data}: the '{split}' split has no images")
    labels = [_read_labels(_label_path(p), len(names)) for p in images]
    kind = dataset_input_kind(data)
    return EvalData(names=names, images=images, labels=labels, templates=templates, source=str(data), input_kind=kind)


def load_thresholds(path: Path | None) -> Thresholds:
    """The deployed thresholds from a YAML file (`inspector calibrate`'s output), or the defaults."""
    if path is None:
        return Thresholds()
    return Thresholds.model_validate(yaml.safe_load(Path(path).read_text()) or {})
