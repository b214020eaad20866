"""Milliseconds per stage (preprocess, inference, postprocess) of `inspector.detector` and of Ultralytics' own
`YOLO(onnx).predict` on the same frames, one image per call.

Usage (from the repository root):
    YOLO_OFFLINE=1 .venv/bin/python bench/detector.py [--model M.onnx] [--images DIR] [--rounds 5] [--conf 0.25]

Without --model it uses the shipped `models/deeppcb-v8n-320.onnx` when present, else the YOLOv8n test model from
`tests/model_factory.py` (built and cached on first use). Without --images it generates 24 mixed-size frames.
Both sides get the frames already decoded (numpy BGR), the same input size (the model's imgsz, full letterbox:
`rect=False`, unless --rect), the same conf / IoU, and a warm-up; the two run interleaved frame by frame, so a busy
machine slows both alike. We report the median and mean per stage over `rounds` passes of all frames.
Ultralytics' numbers are its own `results[0].speed`.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from inspector.detector import OnnxDetector  # noqa: E402 - after the sys.path line, so it runs from a checkout

STAGES = ("preprocess", "inference", "postprocess")


def _frames(folder: Path | None, n: int) -> list[np.ndarray]:
    if folder is None:
        from tests.model_factory import make_test_images

        folder = Path(os.environ.get("TMPDIR", "/tmp")) / "inspector-bench-frames"
        make_test_images(folder, n)
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in {".png", ".jpg", ".jpeg", ".bmp"})[:n]
    return [cv2.imread(str(p), cv2.IMREAD_COLOR) for p in paths]


def _default_model() -> Path:
    shipped = REPO / "models" / "deeppcb-v8n-320.onnx"
    if shipped.exists():
        return shipped
    from tests.model_factory import build_model

    return build_model("yolov8n")


def _ours_once(det: OnnxDetector, im: np.ndarray, conf: float) -> tuple[float, ...]:
    """ms of preprocess, inference, postprocess and their sum for one frame (batch 1)."""
    t0 = time.perf_counter()
    prepared = det.preprocess([im])
    t1 = time.perf_counter()
    raw = det.infer(prepared)
    t2 = time.perf_counter()
    det.postprocess(raw, prepared, conf=conf)
    t3 = time.perf_counter()
    return tuple(dt * 1e3 for dt in (t1 - t0, t2 - t1, t3 - t2, t3 - t0))


def bench(
    det: OnnxDetector, model: Path, frames: list[np.ndarray], rounds: int, conf: float, ultralytics: bool
) -> dict[str, dict[str, list[float]]]:
    """Per-frame ms of each stage for ours and (if asked) Ultralytics, interleaved frame by frame so that both see
    the same machine load. Ultralytics' stages are its own `results[0].speed`; its total is our wall clock around
    `predict`."""
    keys = (*STAGES, "total")
    times = {"inspector": {k: [] for k in keys}}
    predict = None
    if ultralytics:
        os.environ.setdefault("YOLO_OFFLINE", "1")
        from ultralytics import YOLO

        yolo = YOLO(str(model), task="detect")
        kwargs = {"conf": conf, "imgsz": list(det.imgsz), "rect": det.rect, "verbose": False}

        def predict(im: np.ndarray) -> tuple[float, ...]:
            t0 = time.perf_counter()
            r = yolo.predict(im, **kwargs)[0]
            return (*(float(r.speed[s]) for s in STAGES), (time.perf_counter() - t0) * 1e3)

        times["ultralytics"] = {k: [] for k in keys}
    for im in frames[:3]:  # warm-up beyond the load-time one
        _ours_once(det, im, conf)
        if predict:
            predict(im)
    for _ in range(rounds):
        for im in frames:
            for k, v in zip(keys, _ours_once(det, im, conf), strict=True):
                times["inspector"][k].append(v)
            if predict:
                for k, v in zip(keys, predict(im), strict=True):
                    times["ultralytics"][k].append(v)
    return times


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, default=None)
    ap.add_argument("--images", type=Path, default=None, help="folder of frames (default: 24 generated ones)")
    ap.add_argument("--frames", type=int, default=24)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--conf", type=float, default=0.25)
    ap.add_argument("--threads", type=int, default=0, help="onnxruntime intra-op threads for ours (0: default)")
    ap.add_argument("--rect", action="store_true", help="stride-padded letterbox on both sides (dynamic models)")
    ap.add_argument("--no-ultralytics", action="store_true")
    args = ap.parse_args(argv)

    model = args.model or _default_model()
    frames = _frames(args.images, args.frames)
    det = OnnxDetector(model, conf=args.conf, threads=args.threads, rect=args.rect)
    t0 = time.monotonic()
    results = bench(det, model, frames, args.rounds, args.conf, not args.no_ultralytics)
    load = os.getloadavg()

    sizes = sorted({f"{f.shape[1]}x{f.shape[0]}" for f in frames})
    print(f"model: {model.name} ({det.layout}, imgsz {det.imgsz[0]}x{det.imgsz[1]}, sha256 {det.sha256[:12]})")
    print(f"frames: {len(frames)} ({', '.join(sizes)}), rounds: {args.rounds}, conf {args.conf}, rect {args.rect}")
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}, providers {det.providers}")
    print(f"load average at the end: {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}, {time.monotonic() - t0:.0f} s")
    print()
    print("| runtime | stage | median ms | mean ms |")
    print("| --- | --- | ---: | ---: |")
    for name, times in results.items():
        for stage in (*STAGES, "total"):
            v = times[stage]
            print(f"| {name} | {stage} | {statistics.median(v):.2f} | {statistics.fmean(v):.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
