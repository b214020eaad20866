"""Dataset tools: convert DeepPCB to YOLO format with our own held-out split.

DeepPCB layout (see `../shared/datasets/deeppcb/README.md`): `trainval.txt` lists `<image stem> <annotation>`
pairs; `<stem>_test.jpg` is the inspected 640x640 scan, `<stem>_temp.jpg` the defect-free template of the same
region, and the annotation holds one defect a line, `x1 y1 x2 y2 type` (type 1..6) in pixels.

Output layout (Ultralytics YOLO format):
    OUT/images/{train,val}/<id>.jpg       inspected images
    OUT/labels/{train,val}/<id>.txt       `class cx cy w h`, normalised to [0, 1]
    OUT/templates/{train,val}/<id>.jpg    defect-free templates (false-reject measurement; `val` never trained on)
    OUT/data.yaml                         Ultralytics dataset file (names, paths)
    OUT/split.json                        which id went where, and the seed

`--reference` writes the reference-model dataset instead (issue 15): each image is the composite of
`inspector.reference.reference_composite` (channels B, G, R = test image in grey, template in grey, their absolute
difference), written as PNG so that the difference channel is not smeared by JPEG compression:
    OUT/images/{train,val}/<id>.png       composite of the inspected image and its template
    OUT/templates/{train,val}/<id>.png    composite of the template with itself (difference zero): a defect-free part
Labels, split (same `--val-fraction` and `--seed`, same held-out ids) and split.json are as without it, and
data.yaml says `inspector_input: reference-diff`. Each template is registered to its test image first
(`inspector.registration`, `--motion`, default affine): DeepPCB's pairs are not aligned to the pixel (shifts of a
few pixels, up to about 1.5 % stretch along one axis), and an unregistered template would ring every edge in the
difference channel. A pair that does not register keeps its template as it is (DeepPCB's own alignment);
OUT/registration.json lists those pairs with the reason, and the counts say how many registered.

`inspector dataset mix OUT --base DATA.yaml [--backgrounds N] [--add DATA.yaml ...]` writes a training mix without
copying images: OUT/train.txt lists the base's training images, N of its training templates (defect-free parts,
no labels: Ultralytics' "background" images, which teach the model what a good part looks like) and the training
images of the added datasets (e.g. synthetic line parts); OUT/data.yaml validates on the base's held-out split
(OUT/val.txt, OUT/templates_val.txt).
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import yaml

from inspector.reference import INPUT_KEY, REFERENCE_DIFF, dataset_input_kind, reference_composite
from inspector.registration import MOTION_MODELS, MotionModel, Registrar

__all__ = [
    "DEEPPCB_NAMES",
    "DeepPCBPair",
    "held_out_stems",
    "import_deeppcb",
    "list_deeppcb_pairs",
    "main",
    "mix_datasets",
    "read_deeppcb_annotation",
    "write_data_yaml",
]

# DeepPCB type k is our class k-1.
DEEPPCB_NAMES: dict[int, str] = {0: "open", 1: "short", 2: "mousebite", 3: "spur", 4: "copper", 5: "pin-hole"}


@dataclass(frozen=True, slots=True)
class DeepPCBPair:
    stem: str  # e.g. "20085000"
    test_image: Path
    template_image: Path
    annotation: Path


def read_deeppcb_annotation(path: Path) -> list[tuple[float, float, float, float, int]]:
    """Parse one DeepPCB annotation file into `(x1, y1, x2, y2, class_id)` rows (class_id 0-based).

    The dataset separates fields with spaces, and a few files use commas; both are accepted.
    """
    rows: list[tuple[float, float, float, float, int]] = []
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        fields = line.replace(",", " ").split()
        if not fields:
            continue
        if len(fields) != 5:
            raise ValueError(f"{path}:{lineno}: expected 'x1 y1 x2 y2 type', got {line!r}")
        x1, y1, x2, y2 = (float(v) for v in fields[:4])
        kind = int(fields[4])
        if kind not in range(1, 7):
            raise ValueError(f"{path}:{lineno}: defect type must be 1..6, got {kind}")
        rows.append((min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2), kind - 1))
    return rows


def list_deeppcb_pairs(src: Path) -> list[DeepPCBPair]:
    """Read `trainval.txt` (or `test.txt`) under `src` and resolve each pair's files."""
    index = src / "trainval.txt"
    if not index.exists():
        index = src / "test.txt"
    if not index.exists():
        raise FileNotFoundError(f"{src}: no trainval.txt or test.txt: is this a DeepPCB folder?")
    pairs = []
    for lineno, line in enumerate(index.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            image_rel, ann_rel = line.split()
        except ValueError:
            raise ValueError(f"{index}:{lineno}: expected '<image> <annotation>', got {line!r}") from None
        image = src / image_rel
        stem = image.stem
        pairs.append(
            DeepPCBPair(
                stem=stem,
                test_image=image.with_name(f"{stem}_test.jpg"),
                template_image=image.with_name(f"{stem}_temp.jpg"),
                annotation=src / ann_rel,
            )
        )
    return pairs


def held_out_stems(pairs: list[DeepPCBPair], val_fraction: float = 0.2, seed: int = 0) -> set[str]:
    """The stems of the pairs that go to the held-out split: a seeded shuffle, the first `val_fraction` of it."""
    order = list(range(len(pairs)))
    random.Random(seed).shuffle(order)
    n_val = max(1, round(len(pairs) * val_fraction))
    return {pairs[i].stem for i in order[:n_val]}


def write_data_yaml(out: Path, names: dict[int, str] = DEEPPCB_NAMES, input_kind: str | None = None) -> None:
    """Write `out/data.yaml` for our YOLO layout (images, labels and templates per split under `out`).

    input_kind: what the images are when they are not plain camera images (`inspector_input`, e.g. reference-diff).
    """
    data = {
        "path": str(out.resolve()),
        "train": "images/train",
        "val": "images/val",
        "names": names,
        # Not Ultralytics keys: where eval and calibrate find each split's defect-free parts.
        "templates_train": "templates/train",
        "templates_val": "templates/val",
    }
    if input_kind is not None:
        data[INPUT_KEY] = input_kind
    (out / "data.yaml").write_text(yaml.safe_dump(data, sort_keys=False))


def _read_image(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise ValueError(f"{path}: missing or not an image")
    return image


def _write_png(path: Path, image: np.ndarray) -> None:
    if not cv2.imwrite(str(path), image):
        raise OSError(f"{path}: could not write the image")


def _registered_template(test: np.ndarray, template: np.ndarray, motion: MotionModel) -> tuple[np.ndarray, str | None]:
    """The template registered onto the test image's grid, or the template as it is and why it did not register."""
    try:
        result = Registrar(template, model=motion).register(test)
    except ValueError as exc:  # a blank template: nothing to register against
        return template, f"template: {exc}"
    if not result.ok:
        return template, f"{result.reason}: {result.detail}"
    return result.reference, None


def import_deeppcb(
    src: Path,
    out: Path,
    val_fraction: float = 0.2,
    seed: int = 0,
    reference: bool = False,
    motion: MotionModel = "affine",
) -> dict[str, int]:
    """Convert DeepPCB at `src` into a YOLO dataset at `out`. Returns counts per split.

    The split is random by image with `seed` (reproducible), so the held-out images never reach training.
    reference: write the reference-model dataset (module docstring): PNG composites of each test image with its
    template registered to it (`motion`), and of each template with itself, instead of copies of the JPEGs; every
    pair must have its template. Counts then add `registered` and `unregistered` (listed in registration.json).
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    pairs = list_deeppcb_pairs(src)
    if not pairs:
        raise ValueError(f"{src}: the index lists no image pairs")
    val_ids = held_out_stems(pairs, val_fraction, seed)

    split_of: dict[str, list[str]] = {"train": [], "val": []}
    counts = {"train": 0, "val": 0, "boxes": 0, "templates": 0}
    unregistered: dict[str, str] = {}
    for pair in pairs:
        split = "val" if pair.stem in val_ids else "train"
        image = _read_image(pair.test_image)
        h, w = image.shape[:2]
        boxes = read_deeppcb_annotation(pair.annotation)
        for sub in ("images", "labels", "templates"):
            (out / sub / split).mkdir(parents=True, exist_ok=True)
        if reference:
            template = _read_image(pair.template_image)
            registered, why = _registered_template(image, template, motion)
            if why is not None:
                unregistered[pair.stem] = why
            _write_png(out / "images" / split / f"{pair.stem}.png", reference_composite(image, registered))
        else:
            shutil.copyfile(pair.test_image, out / "images" / split / f"{pair.stem}.jpg")
        lines = [
            f"{c} {(x1 + x2) / 2 / w:.6f} {(y1 + y2) / 2 / h:.6f} {(x2 - x1) / w:.6f} {(y2 - y1) / h:.6f}"
            for x1, y1, x2, y2, c in boxes
        ]
        (out / "labels" / split / f"{pair.stem}.txt").write_text("\n".join(lines) + ("\n" if lines else ""))
        if reference:
            _write_png(out / "templates" / split / f"{pair.stem}.png", reference_composite(template, template))
            counts["templates"] += 1
        elif pair.template_image.exists():
            shutil.copyfile(pair.template_image, out / "templates" / split / f"{pair.stem}.jpg")
            counts["templates"] += 1
        split_of[split].append(pair.stem)
        counts[split] += 1
        counts["boxes"] += len(boxes)

    write_data_yaml(out, input_kind=REFERENCE_DIFF if reference else None)
    (out / "split.json").write_text(
        json.dumps({"source": str(src), "seed": seed, "val_fraction": val_fraction, **split_of}, indent=1)
    )
    if reference:
        counts["registered"], counts["unregistered"] = len(pairs) - len(unregistered), len(unregistered)
        report = {"motion": motion, "registered": counts["registered"], "unregistered": unregistered}
        (out / "registration.json").write_text(json.dumps(report, indent=1))
    return counts


def mix_datasets(
    out: Path, base: Path, backgrounds: int = 0, add: list[Path] | None = None, seed: int = 0
) -> dict[str, int]:
    """Write OUT/train.txt, OUT/val.txt, OUT/templates_val.txt and OUT/data.yaml: a training mix over existing
    datasets (see the module docstring). Splits are read with `inspector.evaluate.load_data`, as eval reads them.

    base: a data.yaml from `import-deeppcb` (its val split and templates stay the held-out measurement).
    backgrounds: how many of the base's training templates to add, unlabelled (a seeded sample).
    add: more data.yaml files with the same class names; their training images are added.
    The base's `inspector_input` (e.g. reference-diff composites) is kept, and every added set must have the same.
    Returns counts. Raises ValueError for a missing split, too few templates, different class names or inputs.
    """
    from inspector.evaluate import load_data

    train, val = load_data(base, "train"), load_data(base, "val")
    input_kind = dataset_input_kind(base)
    rows = [str(p) for p in train.images]
    counts = {"base": len(train.images), "backgrounds": 0, "added": 0}
    if backgrounds:
        if backgrounds > len(train.templates):
            raise ValueError(f"--backgrounds {backgrounds}: {base} has only {len(train.templates)} training templates")
        # A template's path has no `images` folder, so Ultralytics finds no label for it: a background image.
        picked = sorted(random.Random(seed).sample(train.templates, backgrounds))
        rows += [str(p) for p in picked]
        counts["backgrounds"] = len(picked)
    for extra in add or []:
        extra_train = load_data(extra, "train")
        if extra_train.names != train.names:
            raise ValueError(f"{extra}: class names {extra_train.names} differ from {base}'s {train.names}")
        if dataset_input_kind(extra) != input_kind:
            raise ValueError(
                f"{extra}: its images ({INPUT_KEY} {dataset_input_kind(extra)}) are not {base}'s ({input_kind})"
            )
        rows += [str(p) for p in extra_train.images]
        counts["added"] += len(extra_train.images)
    out.mkdir(parents=True, exist_ok=True)
    lists = {"train": rows, "val": [str(p) for p in val.images], "templates_val": [str(p) for p in val.templates]}
    for name, paths in lists.items():
        (out / f"{name}.txt").write_text("\n".join(paths) + "\n")
    data = {
        "path": str(out.resolve()),
        "train": "train.txt",
        "val": "val.txt",
        "names": train.names,
        "templates_val": "templates_val.txt",
        **({INPUT_KEY: input_kind} if input_kind is not None else {}),
        "mix": {
            "base": str(base.resolve()),
            "backgrounds": backgrounds,
            "seed": seed,
            "add": [str(a) for a in add or []],
        },
    }
    (out / "data.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    counts["train"] = len(rows)
    return counts


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="inspector dataset", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="action", required=True)
    p = sub.add_parser("import-deeppcb", help="convert DeepPCB to YOLO format with a held-out split")
    p.add_argument("src", type=Path, help="DeepPCB folder holding trainval.txt")
    p.add_argument("out", type=Path, help="output folder (created)")
    p.add_argument("--val-fraction", type=float, default=0.2, help="share held out for validation (0.2)")
    p.add_argument("--seed", type=int, default=0, help="split seed (0)")
    p.add_argument(
        "--reference",
        action="store_true",
        help="write the reference-model dataset: PNG composites (test grey, registered template grey, |difference|)",
    )
    p.add_argument(
        "--motion",
        choices=MOTION_MODELS,
        default="affine",
        help="--reference: how a test image may move against its template (default affine)",
    )
    m = sub.add_parser("mix", help="a training list over datasets: base + background templates + others")
    m.add_argument("out", type=Path, help="output folder for train.txt and data.yaml")
    m.add_argument("--base", type=Path, required=True, help="data.yaml from import-deeppcb (validation comes from it)")
    m.add_argument("--backgrounds", type=int, default=0, help="training templates to add without labels (0)")
    m.add_argument("--add", type=Path, action="append", default=[], help="another data.yaml whose train split to add")
    m.add_argument("--seed", type=int, default=0, help="seed of the template sample (0)")
    args = parser.parse_args(argv)
    try:
        if args.action == "mix":
            counts = mix_datasets(args.out, args.base, args.backgrounds, args.add, args.seed)
        else:
            counts = import_deeppcb(args.src, args.out, args.val_fraction, args.seed, args.reference, args.motion)
    except (OSError, ValueError, yaml.YAMLError) as exc:
        print(f"inspector dataset: {exc}", file=sys.stderr)
        return 1
    print(json.dumps({"out": str(args.out), **counts}))
    return 0
