"""Which golden reference each image of an offline tool is compared with, and the reference model's input built from
the two (issue 15): the one home for `inspector detect`, `eval`, `calibrate` and `bench`.

A reference model (metadata `inspector.input: reference-diff`) gets its images one of three ways:
- one reference for every image (`--reference IMAGE`);
- DeepPCB-style pairs: each `NAME_test` image against the `NAME_temp` beside it; a `_temp` image whose `_test` lies
  beside it is that image's reference, not a part to inspect (`to_inspect`);
- a dataset whose data.yaml says `inspector_input: reference-diff` (`inspector dataset import-deeppcb --reference`):
  its images are composites already and reach the detector as they are.
In the first two, each image is registered to its reference (`inspector.registration`, one `Registrar` per
reference image) and the detector gets their composite (`inspector.reference.reference_composite`); an image that
does not register raises `NotRegistered`, which the tools count as the line would: a fail-safe reject
(`unregistered`). `plan_references` decides which way applies and refuses a model and inputs that do not fit,
as the line does (`inspector.detector.metadata.check_reference`).
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable, Sequence
from pathlib import Path

import cv2
import numpy as np

from inspector.reference import INPUT_KEY, REFERENCE_DIFF, paired_template, reference_composite
from inspector.registration import MOTION_MODELS, MotionModel, Registered, Registrar, Unregistered

__all__ = [
    "NO_REFERENCE",
    "NotRegistered",
    "PairedRegistrar",
    "References",
    "add_reference_arguments",
    "is_pair_reference",
    "plan_references",
    "read_image",
    "to_inspect",
]

NO_REFERENCE = "no reference: a reference model needs --reference IMAGE, or NAME_test.* beside its NAME_temp.*"


def add_reference_arguments(parser: argparse.ArgumentParser) -> None:
    """The tools' `--reference IMAGE` and `--motion` options (`args.reference`, `args.motion`)."""
    parser.add_argument(
        "--reference",
        metavar="IMAGE",
        help="reference models: the defect-free reference of every image (default: each NAME_test image's NAME_temp)",
    )
    parser.add_argument(
        "--motion",
        choices=MOTION_MODELS,
        default="affine",
        help="reference models: how an image may move against its reference (default affine: scans such as "
        "DeepPCB's are stretched a little along one axis; parts on a fixture are rigid)",
    )


def read_image(path: str | Path) -> np.ndarray:
    """(h, w, 3) uint8 BGR, read like Ultralytics does (`imdecode` of the bytes, so any file name works; grey and
    16-bit images come back as 8-bit BGR). Raises `ValueError` when the file is not a decodable image."""
    try:
        data = np.fromfile(path, np.uint8)
    except OSError as exc:
        raise ValueError(f"cannot read: {exc.strerror or exc}") from exc
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        raise ValueError("not a readable image")
    return image


class NotRegistered(ValueError):
    """An image that did not register to its reference: on a line, a fail-safe reject with reason `unregistered`."""

    def __init__(self, reference: str, result: Unregistered) -> None:
        super().__init__(f"unregistered ({result.reason}) against {reference}: {result.detail}")
        self.reference, self.result = reference, result


class References:
    """Each image's reference: the one `shared` image (`--reference`), or each NAME_test's NAME_temp; one
    `Registrar` per reference image (motion model `motion`), built when first needed."""

    def __init__(self, shared: str | None, motion: MotionModel = "affine") -> None:
        self.shared, self.motion = shared, motion
        self._registrars: dict[str, Registrar] = {}

    def for_image(self, path: str | Path) -> str | None:
        if self.shared is not None:
            return self.shared
        template = paired_template(path)
        return str(template) if template is not None else None

    def reference_of(self, path: str | Path, *, own: bool = False) -> str:
        """`for_image`, or ValueError `NO_REFERENCE` when there is none. own: a `NAME_temp` image without a
        reference is its own (a defect-free part against its golden reference: the zero-difference composite that
        `inspector dataset import-deeppcb --reference` writes for templates)."""
        reference = self.for_image(path)
        if reference is None and own and Path(path).stem.endswith("_temp"):
            reference = str(path)
        if reference is None:
            raise ValueError(f"{path}: {NO_REFERENCE}")
        return reference

    def registrar(self, reference: str) -> Registrar:
        """Raises ValueError when the reference cannot be read or has no texture to register against."""
        if reference not in self._registrars:
            self._registrars[reference] = Registrar(read_image(reference), model=self.motion)
        return self._registrars[reference]

    def composite(self, image: np.ndarray, reference: str) -> tuple[np.ndarray, Registered]:
        """The detector's input for `image` against `reference` (a path), and the registration. Raises
        `NotRegistered` when the image does not register, ValueError when the reference cannot be used."""
        try:
            registrar = self.registrar(reference)
        except ValueError as exc:
            raise ValueError(f"reference {reference}: {exc}") from exc
        result = registrar.register(image)
        if not result.ok:
            raise NotRegistered(reference, result)
        return reference_composite(result.frame, result.reference), result


def is_pair_reference(path: str | Path) -> bool:
    """True for a `NAME_temp` image whose `NAME_test` (same extension) lies beside it: a pair's reference."""
    p = Path(path)
    return p.stem.endswith("_temp") and p.with_name(p.stem.removesuffix("_temp") + "_test" + p.suffix).is_file()


def to_inspect(items: Iterable[tuple[str, str | None]], references: References | None) -> list[tuple[str, str | None]]:
    """(path, error) per image to inspect: with pairs (no shared reference), a pair's reference is left out and an
    image without a reference gets the error `NO_REFERENCE`."""
    if references is None or references.shared is not None:
        return list(items)
    out = []
    for path, error in items:
        if error is None and is_pair_reference(path):
            continue  # the reference of a test image in the same run
        if error is None and references.for_image(path) is None:
            error = NO_REFERENCE
        out.append((path, error))
    return out


def plan_references(
    model: Path,
    input_kind: str,
    *,
    paths: Sequence[str | Path] = (),
    reference: str | None = None,
    composites: bool = False,
    motion: MotionModel = "affine",
) -> References | None:
    """How a tool feeds `model` (whose metadata says `input_kind`): None when the images go to it as they are (a
    plain model on camera images, a reference model on composites), else the `References` of a reference model.

    paths: the images to inspect (pairs are looked for among them); reference: `--reference IMAGE`; composites: the
    images are reference-diff composites already (the dataset's `inspector_input`). Raises `ModelError` when the
    model and its inputs do not fit, ValueError when the shared reference cannot be registered against.
    """
    from inspector.detector.metadata import ModelError, check_reference  # onnxruntime: not at import (`--help`)

    if composites:
        if input_kind != REFERENCE_DIFF:
            raise ModelError(
                f"the images are reference-diff composites ({INPUT_KEY}: {REFERENCE_DIFF}) and {model} is a plain "
                "model: use a reference model, or a dataset of camera images"
            )
        if reference is not None:
            raise ModelError(f"--reference {reference}: the images are reference-diff composites already")
        return None
    if input_kind != REFERENCE_DIFF:
        check_reference(model, input_kind, reference is not None)  # a plain model given --reference fails here
        return None
    references = References(reference, motion)
    check_reference(model, input_kind, reference is not None or any(references.for_image(p) for p in paths))
    if reference is not None:
        try:
            references.registrar(reference)
        except ValueError as exc:
            raise ValueError(f"--reference {reference}: {exc}") from exc
    return references


class PairedRegistrar:
    """Each frame's own reference, for a pipeline over frames held in memory and served as they are (`inspector
    bench` on pairs: `MemorySource` hands out the very arrays it was given, so a frame is found by its identity).

    frames and registrars: one registrar per frame (registrars of the same reference may be the same object).
    """

    def __init__(self, frames: Sequence[np.ndarray], registrars: Sequence[Registrar]) -> None:
        if len(frames) != len(registrars):
            raise ValueError("one registrar a frame")
        self._frames = list(frames)  # held, so that their ids stay theirs
        self._by_frame = {id(f): r for f, r in zip(self._frames, registrars, strict=True)}

    def register(self, frame: np.ndarray) -> Registered | Unregistered:
        registrar = self._by_frame.get(id(frame))
        if registrar is None:
            raise LookupError("a frame this PairedRegistrar was not built with (a copy of one?)")
        return registrar.register(frame)
