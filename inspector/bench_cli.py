"""`inspector bench MODEL SOURCE`: the real pipeline's speed on a folder of images or a video.

SOURCE's frames are decoded once and held in memory, then cycled as from a camera; the pipeline (capture
thread, buffer, inference workers, decision, dispatch) runs over `--frames` of them as fast as it goes, or at
`--rate` frames a second. Prints fps and capture-to-decision latency; with `--json` the last line is
`{"fps": ..., "latency_ms": {"p50": ..., "p99": ...}, "mode": ..., ...}`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Literal

from inspector.config import ModelConfig, PipelineConfig
from inspector.line import load_recipe, session_plan
from inspector.pipeline import Pipeline, Recipe
from inspector.sources import MemorySource, Paced, load_frames
from inspector.types import FrameSource, SourceError, Thresholds

__all__ = ["main", "run_bench"]


def _pipeline(recipe: Recipe, frames: list[Any], count: int, config: PipelineConfig, rate: float | None) -> Pipeline:
    source: FrameSource = MemorySource(frames, count=count, description="bench frames")
    if rate:
        source = Paced(source, rate)  # live: a surplus part fails safe (counted), as on a line
    return Pipeline(source, {recipe.name: recipe}, config=config, recipe=recipe.name, stats_window=max(count, 16))


def run_bench(
    model: Path,
    frames: list[Any],
    *,
    count: int = 500,
    mode: Literal["latency", "throughput"] = "throughput",
    sessions: int = 0,
    threads: int = 0,
    spinning: bool = False,
    max_batch: int = 1,
    rate: float | None = None,
    warmup: int | None = None,
) -> dict[str, Any]:
    """Run the pipeline over `count` frames (cycled) and return the figures (see the module docstring).

    warmup: frames run through the same detectors first, unmeasured (default: enough for every session to see
    every batch size once, so onnxruntime's allocations for them happen before timing).
    """
    model_cfg = ModelConfig(path=model, sessions=sessions, threads=threads, spinning=spinning)
    n_sessions, n_threads = session_plan(mode, model_cfg)
    recipe = load_recipe("bench", model_cfg, Thresholds(), mode, max_batch, sessions=n_sessions)
    batch = recipe.detectors[0].max_batch if mode == "throughput" else 1
    config = PipelineConfig(
        mode=mode, max_batch=min(max_batch, batch), queue_size=max(8, 2 * n_sessions * batch), gate_ms=None
    )
    warm = warmup if warmup is not None else 4 * n_sessions * batch
    if warm:
        warm_run = _pipeline(recipe, frames, warm, config, None)
        warm_run.start()
        warm_run.wait()

    pipeline = _pipeline(recipe, frames, count, config, rate)
    start = time.perf_counter()
    pipeline.start()
    pipeline.wait()
    elapsed = time.perf_counter() - start
    stats = pipeline.stats()
    ledger = stats["ledger"]
    det = recipe.detectors[0]
    return {
        "fps": round(ledger["decided"] / elapsed, 2),
        "latency_ms": stats["latency_ms"],
        "stage_ms": stats["stage_ms"],
        "mode": mode,
        "sessions": n_sessions,
        "threads": n_threads,
        "spinning": spinning,
        "max_batch": config.max_batch if mode == "throughput" else 1,
        "rate": rate,
        "frames": count,
        "distinct_frames": len(frames),
        "elapsed_s": round(elapsed, 3),
        "inspected": ledger["decided"] - ledger["failsafe"],
        "failsafe": ledger["failsafe"],
        "model": str(model),
        "sha256": det.sha256,
        "imgsz": list(getattr(det, "imgsz", [])),
        "precision": recipe.model["precision"],
        "provider": recipe.model["provider"],
        "selftest": recipe.model["selftest"]["summary"],
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="inspector bench", description=__doc__)
    parser.add_argument("model", type=Path, help="ONNX detector")
    parser.add_argument("source", type=Path, help="folder of images or a video file")
    parser.add_argument("--frames", type=int, default=500, help="parts to run (frames are cycled)")
    parser.add_argument("--json", action="store_true", help="end with one JSON line of all figures")
    parser.add_argument("--mode", choices=["throughput", "latency"], default="throughput")
    parser.add_argument("--sessions", type=int, default=0, help="inference sessions (0: auto for the mode)")
    parser.add_argument("--threads", type=int, default=0, help="intra-op threads per session (0: auto)")
    parser.add_argument(
        "--spinning", action="store_true", help="let onnxruntime's threads busy-wait (config model.spinning)"
    )
    parser.add_argument("--batch", type=int, default=1, help="largest batch of waiting parts (throughput mode)")
    parser.add_argument("--rate", type=float, help="feed frames at this many per second (default: as fast as it goes)")
    parser.add_argument("--max-distinct", type=int, default=200, help="decode at most this many frames of SOURCE")
    parser.add_argument("--warmup", type=int, help="unmeasured frames first (default: a few per session)")
    args = parser.parse_args(argv)
    if args.frames < 1:
        parser.error("--frames must be >= 1")
    try:
        frames = load_frames(args.source, limit=args.max_distinct)
    except SourceError as exc:
        print(f"inspector bench: {exc}", file=sys.stderr)
        return 2
    try:
        result = run_bench(
            args.model,
            frames,
            count=args.frames,
            mode=args.mode,
            sessions=args.sessions,
            threads=args.threads,
            spinning=args.spinning,
            max_batch=args.batch,
            rate=args.rate,
            warmup=args.warmup,
        )
    except Exception as exc:  # a model that cannot load: one line, no traceback
        print(f"inspector bench: {exc}", file=sys.stderr)
        return 2
    lat = result["latency_ms"]
    print(
        f"mode {result['mode']} ({result['sessions']} session(s) x {result['threads'] or 'auto'} thread(s)"
        + (", spinning" if args.spinning else "")
        + ", "
        f"batch <= {result['max_batch']}), {result['frames']} frames from {len(frames)} distinct"
        + (f" at {args.rate:g}/s" if args.rate else "")
    )
    print(f"fps {result['fps']:.1f}  latency p50 {lat['p50']:.2f} ms  p99 {lat['p99']:.2f} ms  max {lat['max']:.2f} ms")
    stages = "  ".join(f"{k} {v['p50']:.2f}" for k, v in result["stage_ms"].items())
    print(f"stage p50 (ms): {stages}")
    if result["failsafe"]:
        print(f"fail-safe (not inspected in time): {result['failsafe']}")
    if args.json:
        print(json.dumps(result))
    return 0
