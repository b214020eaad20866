"""The input of a reference model: one inspected frame and its recipe's defect-free reference, as one image.

A reference model (issue 15) keeps the Ultralytics architecture and export unchanged: it gets an ordinary
3-channel image, built by `reference_composite` from the frame and the reference already registered to it. The
training set (`inspector dataset import-deeppcb --reference`) and the runtime build it with this one function, so
the model sees at inference exactly what it was trained on.

Channel order, as stored in the HxWx3 uint8 array (OpenCV's B, G, R positions; `cv2.imwrite` writes it so):
    0 (B)  the frame in grey
    1 (G)  the reference in grey
    2 (R)  |frame - reference| (`cv2.absdiff` of the two greys)
Ultralytics reads training images with OpenCV (B, G, R) and reverses the channels to R, G, B before the network;
our detector does the same with a frame (the detector contract), so the network's first input channel is the
difference, the second the reference, the third the frame, at training and at inference alike, as long as the
composite is handed to the detector as if it were a BGR frame. The channels are not colours: colour augmentation
(Ultralytics' hsv_h, hsv_s, hsv_v) must be off when training on composites.
"""

from __future__ import annotations

import glob
from pathlib import Path

import cv2
import numpy as np
import yaml

__all__ = [
    "INPUT_KEY",
    "INPUT_KINDS",
    "REFERENCE_DIFF",
    "dataset_input_kind",
    "grey",
    "paired_template",
    "reference_composite",
]

# The data.yaml key (not an Ultralytics one) that says what a dataset's images are, and its value for composites.
INPUT_KEY = "inspector_input"
REFERENCE_DIFF = "reference-diff"
INPUT_KINDS = ("image", REFERENCE_DIFF)  # what a model can take: camera images, or composites (this module)


def dataset_input_kind(data: str | Path) -> str | None:
    """A dataset's `inspector_input` from its data.yaml (or the data.yaml in folder `data`): None for plain camera
    images, or when there is no data.yaml to read. Raises ValueError for a value other than `INPUT_KINDS`."""
    path = Path(data)
    if path.is_dir():
        path = path / "data.yaml"
    if path.suffix not in {".yaml", ".yml"} or not path.is_file():
        return None
    spec = yaml.safe_load(path.read_text()) or {}
    kind = spec.get(INPUT_KEY) if isinstance(spec, dict) else None
    if kind is not None and kind not in INPUT_KINDS:
        raise ValueError(f"{path}: {INPUT_KEY}: {kind!r} is not one of {list(INPUT_KINDS)}")
    return kind


def grey(image: np.ndarray) -> np.ndarray:
    """An HxW uint8 grey image from a BGR (HxWx3), BGRA (HxWx4) or grey (HxW or HxWx1) uint8 array."""
    if image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got {image.dtype}")
    if image.ndim == 2:
        return image
    if image.ndim == 3 and image.shape[2] == 1:
        return image[:, :, 0]
    if image.ndim == 3 and image.shape[2] == 3:
        return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2GRAY)
    raise ValueError(f"expected an HxW, HxWx1, HxWx3 or HxWx4 image, got shape {image.shape}")


def reference_composite(frame_bgr: np.ndarray, reference_bgr: np.ndarray) -> np.ndarray:
    """The reference model's input: HxWx3 uint8, channels (frame grey, reference grey, |difference|).

    frame_bgr: the inspected image; reference_bgr: the defect-free reference, already registered to the frame
    (same size, pixel for pixel). Either may be BGR or grey. See the module docstring for the channel order.
    Raises ValueError when the sizes differ.
    """
    frame, reference = grey(frame_bgr), grey(reference_bgr)
    if frame.shape != reference.shape:
        raise ValueError(
            f"frame {frame.shape[1]}x{frame.shape[0]} and reference {reference.shape[1]}x{reference.shape[0]} "
            "differ in size: register the reference to the frame first"
        )
    return cv2.merge([frame, reference, cv2.absdiff(frame, reference)])


def paired_template(image: str | Path) -> Path | None:
    """The defect-free template beside a DeepPCB-style test image: `NAME_temp.<ext>` for `NAME_test.<ext>` (the same
    extension first, then any other file named `NAME_temp.*`); None when `image` is not a `_test` image or has none."""
    path = Path(image)
    if not path.stem.endswith("_test"):
        return None
    base = path.stem.removesuffix("_test") + "_temp"
    same = path.with_name(base + path.suffix)
    if same.is_file():
        return same
    return next((p for p in sorted(path.parent.glob(glob.escape(base) + ".*")) if p.is_file()), None)
