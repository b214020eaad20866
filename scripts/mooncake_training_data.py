"""Rebuild the mooncake model's training data (`data/`) on a new machine, as its chunks used it.

Usage: `.venv/bin/python scripts/mooncake_training_data.py [--root data] [--jobs 2]`

Renders the synthetic line's seeds with `inspector sim mooncake dataset` (`--jobs` at a time; a folder that already
has its `data.yaml` is kept) and links the training sets the checkpoint README's chunks name: the PNG and JPEG mix
of seed 1 (chunk 4 on), then `mooncake-focus*` (the parts of later seeds that carry a crack or a blurred imprint,
and defect-free parts of seed 5), each one's `data.yaml` listing every earlier set's images, and the 1,000 parts of
seed 11 the thresholds are fitted on. Images are links, so the sets cost the renders' disk only (about 3 GB).

About 9 minutes on the 2-core VM with two jobs. Seed 1's labels should hash as the checkpoint README says (printed
at the end): another CPU's floating point can move a box by a pixel.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import yaml

CRACK, BLURRED_IMPRINT = 0, 3  # class ids, as the model's metadata names them


@dataclass(frozen=True)
class Render:
    """One `inspector sim mooncake dataset` call."""

    folder: str
    parts: int
    seed: int
    defect_rate: float
    val_fraction: float
    png: bool = True

    def command(self, root: Path) -> list[str]:
        cmd = [str(Path(sys.executable).with_name("inspector")), "sim", "mooncake", "dataset", str(root / self.folder)]
        cmd += ["-n", str(self.parts), "--seed", str(self.seed), "--defect-rate", str(self.defect_rate)]
        cmd += ["--val-fraction", str(self.val_fraction)]
        return cmd + (["--image-ext", "png"] if self.png else [])


RENDERS = [
    Render("mooncake-2400", 2400, 1, 0.6, 0.15, png=False),  # chunks 1-3: JPEG (quality 95)
    Render("mooncake-2400-png", 2400, 1, 0.6, 0.15),  # the same parts as PNG: the held-out frames, the mix
    Render("mooncake-s2-all", 2200, 2, 1, 0),
    Render("mooncake-s3-all", 4400, 3, 1, 0),
    Render("mooncake-s4-all", 4400, 4, 1, 0),
    Render("mooncake-s5-good", 2000, 5, 0, 0),
    Render("mooncake-s6-all", 2200, 6, 1, 0),
    Render("mooncake-s7-all", 2200, 7, 1, 0),
    Render("mooncake-calib-png", 1000, 11, 0.5, 1),  # thresholds (inspector calibrate), never trained on
]

# (training set, render, classes a part must carry to be linked; None: every part) in the order the chunks added
# them; each set's data.yaml trains on the mix and every set before it.
FOCUS = [
    ("mooncake-focus", "mooncake-s2-all", {CRACK, BLURRED_IMPRINT}),  # chunk 6
    ("mooncake-focus3", "mooncake-s3-all", {CRACK}),  # chunk 8
    ("mooncake-focus4", "mooncake-s4-all", {CRACK, BLURRED_IMPRINT}),  # chunk 9
    ("mooncake-focus5", "mooncake-s5-good", None),  # chunk 10: defect-free parts, linked as the whole render
    ("mooncake-focus6", "mooncake-s6-all", {CRACK, BLURRED_IMPRINT}),  # chunk 11
    ("mooncake-focus7", "mooncake-s7-all", {CRACK, BLURRED_IMPRINT}),  # chunk 12
]


def render(root: Path, jobs: int) -> None:
    todo = [r for r in RENDERS if not (root / r.folder / "data.yaml").exists()]
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        for result in pool.map(lambda r: subprocess.run(r.command(root), env=_env()), todo):
            result.check_returncode()


def _env() -> dict[str, str]:
    return {**os.environ, "YOLO_OFFLINE": "1"}


def link_mix(root: Path) -> Path:
    """Seed 1's training parts, each as PNG or JPEG by a seeded coin (chunk 4); held-out parts as PNG."""
    mix, rng = (root / "mooncake-2400-mix").resolve(), random.Random(4)
    for split in ("train", "val"):
        (mix / "images" / split).mkdir(parents=True)
        (mix / "labels" / split).mkdir(parents=True)
        for label in sorted((root / "mooncake-2400-png/labels" / split).glob("*.txt")):
            png = split == "val" or rng.random() < 0.5  # one draw per training part, in file-name order
            source = root / ("mooncake-2400-png" if png else "mooncake-2400")
            image = source / "images" / split / f"{label.stem}.{'png' if png else 'jpg'}"
            os.symlink(image.resolve(), mix / "images" / split / image.name)
            os.symlink(label.resolve(), mix / "labels" / split / label.name)
    _write_yaml(mix, "images/train", "images/val", root)
    return mix


def link_focus(root: Path, name: str, source: str, classes: set[int] | None, train: list[str], val: str) -> str:
    """Link `source`'s parts that carry one of `classes` (None: take the render whole); returns the images' folder."""
    src, dst = (root / source).resolve(), (root / name).resolve()
    images = src / "images/train"
    if classes is not None:
        images = dst / "images/train"
        images.mkdir(parents=True)
        (dst / "labels/train").mkdir(parents=True)
        linked = 0
        for label in sorted((src / "labels/train").glob("*.txt")):
            ids = {int(line.split()[0]) for line in label.read_text().splitlines() if line.strip()}
            if ids & classes:
                os.symlink(src / "images/train" / f"{label.stem}.png", images / f"{label.stem}.png")
                os.symlink(label, dst / "labels/train" / label.name)
                linked += 1
        print(f"{name}: {linked} parts of {source} linked", flush=True)
    dst.mkdir(exist_ok=True)
    _write_yaml(dst, [*train, str(images)], val, root)
    return str(images)


def _write_yaml(folder: Path, train: str | list[str], val: str, root: Path) -> None:
    names = yaml.safe_load((root / "mooncake-2400-png/data.yaml").read_text())["names"]
    body = {"path": str(folder.resolve()), "train": train, "val": val, "names": names}
    (folder / "data.yaml").write_text(yaml.safe_dump(body, sort_keys=False))


def seed1_hashes(root: Path) -> tuple[str, str]:
    """The checkpoint README's check: seed 1's labels (concatenated in path order) and its split file."""
    folder = root / "mooncake-2400"
    labels = sorted(str(p.relative_to(folder)) for p in (folder / "labels").rglob("*.txt"))
    digest = hashlib.sha256(b"".join((folder / p).read_bytes() for p in labels)).hexdigest()
    return digest, hashlib.sha256((folder / "split.json").read_bytes()).hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path("data"), help="where the datasets go (data)")
    parser.add_argument("--jobs", type=int, default=2, help="renders at a time (2)")
    args = parser.parse_args()
    root: Path = args.root
    built = [n for n in ["mooncake-2400-mix"] + [f[0] for f in FOCUS] if (root / n).exists()]
    if built:
        parser.error(f"{root}: {', '.join(built)} exist already; remove them to link them again")
    render(root, args.jobs)
    mix = link_mix(root)
    train, val = [str(mix / "images/train")], str(mix / "images/val")
    for name, source, classes in FOCUS:
        train.append(link_focus(root, name, source, classes, train, val))
    labels, split = seed1_hashes(root)
    print(f"seed 1 labels sha256 {labels}\nseed 1 split.json sha256 {split}")


if __name__ == "__main__":
    main()
