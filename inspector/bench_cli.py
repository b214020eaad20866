"""`inspector bench MODEL SOURCE`: the real pipeline's speed on a folder of images or a video.

SOURCE's frames are decoded once and held in memory, then cycled as from a camera; the pipeline (capture
thread, buffer, inference workers, decision, dispatch) runs over `--frames` of them as fast as it goes, or at
`--rate` frames a second. Prints fps and capture-to-decision latency; with `--json` the last line is
`{"fps": ..., "latency_ms": {"p50": ..., "p99": ...}, "mode": ..., ...}`.

A reference model (issue 15) takes references as `inspector detect` does (`inspector.reference_inputs`):
`--reference IMAGE` for every frame, or a folder of DeepPCB-style pairs (each `NAME_test` frame registered to its
`NAME_temp`), or SOURCE a data.yaml with `inspector_input: reference-diff` whose `--split` images are composites
already. Registration runs in the pipeline's inference workers, as on a line: it is in the timing, and in
`stage_ms` as `register`. SOURCE may be any data.yaml (or a folder holding one): its `--split` images are the frames.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from inspector.config import ModelConfig, PipelineConfig
from inspector.detect_cli import expand_paths
from inspector.line import load_recipe, session_plan
from inspector.pipeline import Pipeline, Recipe, Sink
from inspector.protocols import FrameRegistrar
from inspector.reference import REFERENCE_DIFF, dataset_input_kind
from inspector.reference_inputs import (
    PairedRegistrar,
    add_reference_arguments,
    plan_references,
    read_image,
    to_inspect,
)
from inspector.registration import MotionModel
from inspector.sources import MemorySource, Paced, load_frames
from inspector.types import FrameSource, SourceError, Thresholds, Verdict

__all__ = ["BenchFrames", "bench_frames", "main", "run_bench"]


class _UnregisteredCount:
    """A sink counting the parts that failed safe because they did not register to their reference."""

    name = "unregistered"

    def __init__(self) -> None:
        self.count = 0  # the dispatch thread alone writes it

    def handle(self, verdict: Verdict) -> None:
        self.count += "unregistered" in verdict.reasons

    def close(self) -> None:
        pass


def _pipeline(
    recipe: Recipe,
    frames: list[Any],
    count: int,
    config: PipelineConfig,
    rate: float | None,
    sinks: Sequence[Sink] = (),
) -> Pipeline:
    source: FrameSource = MemorySource(frames, count=count, description="bench frames")
    if rate:
        source = Paced(source, rate)  # live: a surplus part fails safe (counted), as on a line
    return Pipeline(
        source, {recipe.name: recipe}, config=config, recipe=recipe.name, stats_window=max(count, 16), sinks=sinks
    )


@dataclass
class BenchFrames:
    """The frames of a bench run and what a reference model compares them with.

    reference: registers each frame (the `--reference` image's `Registrar`, or a `PairedRegistrar` over pairs);
    composites: the frames are reference-diff composites already; input: how, in words, for the report;
    left_out: pairs not run because their reference cannot be registered against (path, why).
    """

    frames: list[np.ndarray]
    reference: FrameRegistrar | None = None
    composites: bool = False
    input: str = "image"
    left_out: list[tuple[str, str]] = field(default_factory=list)


def _is_dataset(source: Path) -> bool:
    return source.suffix in {".yaml", ".yml"} or (source.is_dir() and (source / "data.yaml").is_file())


def bench_frames(
    model: Path,
    source: Path,
    *,
    limit: int,
    reference: str | None = None,
    motion: MotionModel = "affine",
    split: str = "val",
) -> BenchFrames:
    """SOURCE's frames (at most `limit`) and their references for `model` (see the module docstring). Raises
    `SourceError` when there are no frames, `ValueError` (`ModelError`) when model and references do not fit."""
    from inspector.detector import OnnxDetector  # only to read what the model takes

    kind = OnnxDetector(model, warmup=False, max_batch=1).input_kind
    if _is_dataset(source):
        from inspector.eval_data import load_data

        composites = dataset_input_kind(source) == REFERENCE_DIFF
        paths = [str(p) for p in load_data(source, split).images[:limit]]
    else:
        composites = False
        paths = [p for p, error in expand_paths([str(source)]) if error is None] if source.is_dir() else []
    references = plan_references(model, kind, paths=paths, reference=reference, composites=composites, motion=motion)
    if references is None or references.shared is not None:
        frames = [read_image(p) for p in paths] if _is_dataset(source) else load_frames(source, limit=limit)
        if references is None:
            return BenchFrames(frames, composites=composites, input="composites" if composites else "image")
        assert reference is not None
        return BenchFrames(frames, references.registrar(reference), input=reference)
    frames, registrars, left_out = [], [], []
    for path, error in to_inspect([(p, None) for p in paths], references)[:limit]:
        if error is not None:
            raise ValueError(f"{path}: {error}")
        try:
            registrar = references.registrar(references.reference_of(path))
        except ValueError as exc:  # e.g. one of DeepPCB's templates is blank white: nothing to time there
            left_out.append((path, str(exc)))
            continue
        frames.append(read_image(path))
        registrars.append(registrar)
    if not frames:
        raise SourceError(f"no NAME_test images with a usable NAME_temp in {source}")
    return BenchFrames(frames, PairedRegistrar(frames, registrars), input="pairs", left_out=left_out)


def run_bench(
    model: Path,
    frames: list[Any] | BenchFrames,
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
    frames: plain frames, or `bench_frames`' answer for a reference model (registration then runs in the pipeline).
    """
    given = frames if isinstance(frames, BenchFrames) else BenchFrames(list(frames))
    frames = given.frames
    model_cfg = ModelConfig(path=model, sessions=sessions, threads=threads, spinning=spinning)
    n_sessions, n_threads = session_plan(mode, model_cfg)
    supplied = given.reference is not None or given.composites
    recipe = load_recipe(
        "bench", model_cfg, Thresholds(), mode, max_batch, sessions=n_sessions, reference_supplied=supplied
    )
    recipe.reference = given.reference
    batch = recipe.detectors[0].max_batch if mode == "throughput" else 1
    config = PipelineConfig(
        mode=mode, max_batch=min(max_batch, batch), queue_size=max(8, 2 * n_sessions * batch), gate_ms=None
    )
    warm = warmup if warmup is not None else 4 * n_sessions * batch
    if warm:
        warm_run = _pipeline(recipe, frames, warm, config, None)
        warm_run.start()
        warm_run.wait()

    unregistered = _UnregisteredCount()
    pipeline = _pipeline(recipe, frames, count, config, rate, [unregistered])
    start, cpu_start = time.perf_counter(), time.process_time()
    pipeline.start()
    pipeline.wait()
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
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
        # every thread of the process: what a frame costs the box, whatever else the machine (or its host) runs
        "cpu_ms_per_frame": round(cpu * 1e3 / count, 3),
        "inspected": ledger["decided"] - ledger["failsafe"],
        "failsafe": ledger["failsafe"],
        "unregistered": unregistered.count,
        "input": given.input,
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
    parser.add_argument("--split", default="val", help="SOURCE a data.yaml: the split whose images to run (val)")
    add_reference_arguments(parser)
    args = parser.parse_args(argv)
    if args.frames < 1:
        parser.error("--frames must be >= 1")
    try:
        frames = bench_frames(
            args.model,
            args.source,
            limit=args.max_distinct,
            reference=args.reference,
            motion=args.motion,
            split=args.split,
        )
    except (SourceError, OSError, ValueError) as exc:  # ModelError is a ValueError
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
        f"batch <= {result['max_batch']}), {result['frames']} frames from {len(frames.frames)} distinct"
        + (f" at {args.rate:g}/s" if args.rate else "")
    )
    print(
        f"fps {result['fps']:.1f}  latency p50 {lat['p50']:.2f} ms  p99 {lat['p99']:.2f} ms  max {lat['max']:.2f} ms  "
        f"CPU {result['cpu_ms_per_frame']:.2f} ms a frame"
    )
    shown = {k: v for k, v in result["stage_ms"].items() if k != "register" or frames.reference is not None}
    stages = "  ".join(f"{k} {v['p50']:.2f}" for k, v in shown.items())
    print(f"stage p50 (ms): {stages}")
    if result["input"] != "image":
        registered = f", {result['unregistered']} unregistered" if frames.reference is not None else ""
        print(f"reference: {result['input']}{registered}")
    if frames.left_out:
        path, why = frames.left_out[0]
        print(f"left out: {len(frames.left_out)} pair(s) whose reference cannot be registered against ({path}: {why})")
    result["left_out"] = len(frames.left_out)
    if result["failsafe"]:
        print(f"fail-safe (not inspected in time, or unregistered): {result['failsafe']}")
    if args.json:
        print(json.dumps(result))
    return 0
