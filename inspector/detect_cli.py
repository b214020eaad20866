"""`inspector detect MODEL PATH... [--conf C] [--iou I] [--json]`: run the detector on images and print the boxes.

PATH is an image file or a folder (its images, sorted by name, not recursive). With `--json`, one JSON object per
line and image: `{"image": path, "detections": [{"class_id", "class_name", "confidence", "xyxy"}]}`, boxes in
original-image pixels; an image that cannot be read gives `{"image": path, "error": "..."}` instead. Without
`--json`, a readable table. A bad path or unreadable image is reported and the run goes on; the exit status is 1
when any image failed, 2 when the model cannot be loaded, else 0.

A reference model (metadata `inspector.input: reference-diff`, issue 15) compares each image with a defect-free
reference: `--reference IMAGE` gives one for every image; without it, each DeepPCB-style `NAME_test` image is
checked against the `NAME_temp` beside it (a folder's `_temp` images are references, not inspected). Each image
is registered to its reference (`inspector.registration`, `--motion`) and the detector gets their composite
(`inspector.reference`); its JSON line adds `"reference"` (the reference's path) and `"registration"` (motion and
correlation). An image that does not register is an error line `unregistered (<reason>): ...`. A reference model
with no reference at all, or a plain model given `--reference`, is refused at load (exit 2). The pairing, the
registration and that check live in `inspector.reference_inputs`, shared with `eval`, `calibrate` and `bench`.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

import numpy as np

from inspector.detector import PROVIDERS, OnnxDetector
from inspector.reference_inputs import add_reference_arguments, plan_references, read_image, to_inspect
from inspector.types import Detections

__all__ = ["IMAGE_SUFFIXES", "expand_paths", "main", "read_image"]

# The still-image formats Ultralytics' loader accepts that OpenCV can decode.
IMAGE_SUFFIXES = {".bmp", ".dng", ".jpeg", ".jpg", ".jpe", ".mpo", ".png", ".tif", ".tiff", ".webp", ".pfm", ".pgm",
                  ".ppm", ".pbm", ".jp2", ".sr", ".ras"}  # fmt: skip


def expand_paths(paths: list[str]) -> Iterator[tuple[str, str | None]]:
    """(path, error) per image to process: folders expand to their images (sorted); a missing path gives an error."""
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            files = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
            if not files:
                yield raw, "folder holds no images"
            for f in files:
                yield str(f), None
        elif p.is_file():
            yield raw, None
        elif p.exists():
            yield raw, "not a regular file"
        else:
            yield raw, "no such file or folder"


def _print_table(out: TextIO, path: str, image: np.ndarray, dets: Detections, names: dict[int, str]) -> None:
    h, w = image.shape[:2]
    out.write(f"{path}  ({w}x{h})  {len(dets)} detection{'s' if len(dets) != 1 else ''}\n")
    if len(dets):
        width = max(5, *(len(names.get(int(c), str(c))) for c in dets.class_id))
        out.write(f"  {'id':>3}  {'class':<{width}}  {'conf':>6}  {'x1':>8} {'y1':>8} {'x2':>8} {'y2':>8}\n")
        for box, score, cid in dets:
            x1, y1, x2, y2 = (float(v) for v in box)
            name = names.get(cid, str(cid))
            out.write(f"  {cid:>3}  {name:<{width}}  {score:6.3f}  {x1:8.1f} {y1:8.1f} {x2:8.1f} {y2:8.1f}\n")


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="inspector detect",
        description="Run an ONNX YOLO detector on images or folders of images and print the boxes "
        "(original-image pixels).",
    )
    ap.add_argument("model", help="ONNX detection model (exported by `yolo export format=onnx`)")
    ap.add_argument("paths", nargs="+", metavar="PATH", help="image file or folder of images")
    ap.add_argument("--conf", type=float, default=0.25, help="confidence threshold (default 0.25)")
    ap.add_argument("--iou", type=float, default=0.7, help="NMS IoU threshold (default 0.7)")
    ap.add_argument("--max-det", type=int, default=300, help="most boxes per image (default 300)")
    ap.add_argument("--json", action="store_true", help="one JSON object per line and image")
    ap.add_argument(
        "--provider",
        action="append",
        choices=sorted(PROVIDERS),
        help="execution provider, repeatable in preference order (default cpu); missing ones fall back to CPU",
    )
    ap.add_argument("--threads", type=int, default=0, help="onnxruntime intra-op threads (0: its default)")
    ap.add_argument("--batch", type=int, default=1, help="images per inference run (capped by the model)")
    add_reference_arguments(ap)
    ap.add_argument(
        "--rect",
        action="store_true",
        help="dynamic-shape models: pad each image only to the stride (as Ultralytics' predict does for them)",
    )
    return ap


def main(argv: list[str] | None = None) -> int:
    """Entry point of `inspector detect`; returns the exit status."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="inspector detect: %(levelname)s %(message)s")
    out = sys.stdout
    if not 0.0 <= args.conf <= 1.0 or not 0.0 < args.iou <= 1.0 or args.max_det < 1 or args.batch < 1:
        print(
            "inspector detect: --conf must be in [0, 1], --iou in (0, 1], --max-det and --batch >= 1", file=sys.stderr
        )
        return 2
    try:
        detector = OnnxDetector(
            args.model,
            providers=args.provider or ["cpu"],
            threads=args.threads,
            conf=args.conf,
            iou=args.iou,
            max_det=args.max_det,
            max_batch=args.batch,
            rect=args.rect,
        )
        expanded = list(expand_paths(args.paths))
        references = plan_references(
            detector.path,
            detector.input_kind,
            paths=[path for path, error in expanded if error is None],
            reference=args.reference,
            motion=args.motion,
        )
        items = to_inspect(expanded, references)
    except ValueError as exc:  # ModelError is a ValueError
        print(f"inspector detect: {exc}", file=sys.stderr)
        return 2
    batch_size = min(args.batch, detector.max_batch)
    failed = 0

    def report_error(path: str, error: str) -> None:
        nonlocal failed
        failed += 1
        if args.json:
            out.write(json.dumps({"image": path, "error": error}) + "\n")
        else:
            out.write(f"{path}  ERROR: {error}\n")
        out.flush()

    def flush(batch: list[tuple[str, np.ndarray, dict[str, object]]]) -> None:
        try:
            results = detector.detect([im for _, im, _ in batch])
        except Exception as exc:  # one bad batch must not stop the run
            for path, _, _ in batch:
                report_error(path, f"detection failed: {type(exc).__name__}: {exc}")
            return
        for (path, image, extra), dets in zip(batch, results, strict=True):
            if args.json:
                line = {"image": path, **extra, "detections": dets.to_list(detector.names)}
                out.write(json.dumps(line) + "\n")
            else:
                _print_table(out, path, image, dets, detector.names)
        out.flush()

    def prepare(path: str) -> tuple[np.ndarray, dict[str, object]]:
        """The detector's input for one image, and what its JSON line adds; ValueError says why there is none."""
        image = read_image(path)
        if references is None:
            return image, {}
        reference = references.for_image(path)
        assert reference is not None  # to_inspect reported images without one
        composite, result = references.composite(image, reference)  # NotRegistered is a ValueError
        registration = {**result.motion.to_dict(), "correlation": round(result.correlation, 4)}
        return composite, {"reference": reference, "registration": registration}

    pending: list[tuple[str, np.ndarray, dict[str, object]]] = []
    for path, error in items:
        if error is None:
            try:
                pending.append((path, *prepare(path)))
            except ValueError as exc:
                error = str(exc)
        if error is not None:
            flush(pending)  # keep the output in input order
            pending = []
            report_error(path, error)
        elif len(pending) >= batch_size:
            flush(pending)
            pending = []
    if pending:
        flush(pending)
    if failed:
        print(f"inspector detect: {failed} image{'s' if failed != 1 else ''} failed", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
