"""Pipeline speed against bare onnxruntime and Ultralytics, YOLOv8n ONNX at 320 and 640, in one run.

    YOLO_OFFLINE=1 .venv/bin/python bench/pipeline.py [--sizes 320 640] [--rounds 4] [--json-out FILE]

What is measured, each in a fresh subprocess (no thread pool or allocator state leaks between variants), the
variants interleaved round by round so that a noisy neighbour on the shared machine hits them alike:
- `bare`: `session.run` on pre-made input tensors, one session with onnxruntime's default options, batch 1 (what
  a script calling onnxruntime directly gets); also its median time per run.
- `bare_nospin`: the same with onnxruntime's thread spinning off (`session.intra_op.allow_spinning=0`), the
  session layout latency mode uses by default (`model.spinning: false`): the reference for its latency.
- `bare_parallel`: the same pre-made tensors on two single-thread sessions in two threads (the ceiling of the
  throughput layout without any pre/postprocessing); also its median time per run.
- `ultralytics`: `YOLO(onnx)(frame, imgsz=...)` looping over the same frames (decode excluded: frames in memory).
- `pipeline`: `inspector bench` in throughput mode: the real pipeline (capture thread, bounded buffer, parallel
  single-thread sessions, letterbox, decode + NMS, decision, dispatch) over the same frames, as fast as it goes.
- `latency`: the same in latency mode (one session on all cores, spinning off, one part at a time): its maximum
  rate. `latency_spin`: the same with spinning on (`--spinning`, onnxruntime's default), for the trade-off.
- `latency80` / `latency_spin80` / `pipeline80`: each fed at 80 % of its maximum rate by a paced (live) source
  for twice as long: p50 / p99 capture-to-decision latency.
- `gil` (once per size): does `session.run` release the GIL (see `worker_gil`)?
The models are built from `yolov8n.yaml` (random weights: speed does not depend on training) and exported with
Ultralytics (`dynamic=True` for batching, `simplify=True`) into `.cache/bench/`. Frames: DeepPCB validation images
(640 x 640) when `data/deeppcb` exists, else synthetic line scans.
Criteria (issue 4, see `summarise`): pipeline fps >= 0.97 x bare and >= 1.2 x ultralytics, per size; p99 latency at
80 % of the maximum rate <= the median inference time + 5 ms. The machine is shared with other jobs: before each
measurement the driver waits until the others leave the CPUs idle (`--quiet`), and each variant runs `--rounds`
times interleaved.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
CACHE = ROOT / ".cache" / "bench"
DEFAULT_SOURCE = ROOT / "data" / "deeppcb" / "images" / "val"


# ------------------------------------------------------------------------------------------------ set-up
def build_model(imgsz: int) -> Path:
    """YOLOv8n from its yaml, exported to ONNX at `imgsz` with a dynamic batch axis (cached)."""
    out = CACHE / f"yolov8n-{imgsz}.onnx"
    if out.exists():
        return out
    CACHE.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("YOLO_OFFLINE", "1")
    from ultralytics import YOLO

    cwd = os.getcwd()
    os.chdir(CACHE)  # Ultralytics writes next to the "weights" (here: in the working directory)
    try:
        exported = Path(YOLO("yolov8n.yaml").export(format="onnx", imgsz=imgsz, dynamic=True, simplify=True))
        shutil.move(str(exported), out)
    finally:
        os.chdir(cwd)
    return out


def frames_folder(source: Path | None) -> Path:
    """The frames to run: `source`, the DeepPCB validation images, or 64 synthetic line scans written once."""
    if source is not None:
        return source
    if DEFAULT_SOURCE.is_dir() and any(DEFAULT_SOURCE.iterdir()):
        return DEFAULT_SOURCE
    folder = CACHE / "frames"
    if not folder.is_dir():
        import cv2

        from inspector.config import SyntheticConfig
        from inspector.sim import SyntheticSource

        folder.mkdir(parents=True)
        sim = SyntheticSource(SyntheticConfig())
        sim.open()
        for i in range(64):
            item = sim.read()
            assert item is not None
            cv2.imwrite(str(folder / f"{i:03d}.png"), item[0])
        sim.close()
    return folder


# ------------------------------------------------------------------------------------------------ workers
def _frames(source: Path, distinct: int) -> list[np.ndarray]:
    from inspector.sources import load_frames

    return load_frames(source, limit=distinct)


def worker_bare(
    model: Path, source: Path, count: int, distinct: int, parallel: bool, spin: bool = True
) -> dict[str, Any]:
    import onnxruntime as ort

    from inspector.detector import OnnxDetector

    det = OnnxDetector(model, warmup=False, max_batch=1)
    tensors = []
    for img in _frames(source, distinct):  # pre-made: letterboxed once, outside the timing
        prepared = det.preprocess([img])
        tensors.append(prepared.tensor.copy())
        prepared.release()
    name = det.session.get_inputs()[0].name

    def session(threads: int) -> ort.InferenceSession:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        if not spin:
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        return ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])

    if not parallel:
        sess = session(0)
        for t in tensors[:5]:
            sess.run(None, {name: t})
        times = []
        start = time.perf_counter()
        for i in range(count):
            t0 = time.perf_counter()
            sess.run(None, {name: tensors[i % len(tensors)]})
            times.append(time.perf_counter() - t0)
        elapsed = time.perf_counter() - start
        return {
            "fps": count / elapsed,
            "median_run_ms": statistics.median(times) * 1e3,
            "p99_run_ms": float(np.percentile(times, 99)) * 1e3,
            "elapsed_s": elapsed,
        }
    sessions = [session(1), session(1)]
    for s in sessions:
        for t in tensors[:3]:
            s.run(None, {name: t})

    run_times: list[float] = []

    def loop(sess: ort.InferenceSession, k: int, offset: int) -> None:
        for i in range(k):
            t0 = time.perf_counter()
            sess.run(None, {name: tensors[(offset + 2 * i) % len(tensors)]})
            run_times.append(time.perf_counter() - t0)  # list.append is atomic under the GIL

    threads = [threading.Thread(target=loop, args=(s, count // 2, j)) for j, s in enumerate(sessions)]
    start = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    elapsed = time.perf_counter() - start
    return {
        "fps": 2 * (count // 2) / elapsed,
        "median_run_ms": statistics.median(run_times) * 1e3,
        "p99_run_ms": float(np.percentile(run_times, 99)) * 1e3,
        "elapsed_s": elapsed,
    }


def worker_gil(model: Path, seconds: float = 2.0) -> dict[str, Any]:
    """Does `session.run` release the GIL? A pure-Python counting loop runs in a thread while a single-thread
    session loops `run` on the other core, once in another thread of this process and once in a child process.
    Both take one core from the counter alike; only the thread can also take the GIL. The ratio of the counter's
    speeds (thread / process) is 1.0 when `run` releases the GIL, near 0 when it holds it."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    x = np.random.default_rng(0).random((1, 3, *_static_hw(inp.shape, model)), np.float32)
    sess.run(None, {inp.name: x})

    def counter_speed(busy: Any) -> float:
        stop = threading.Event()
        counter = [0]

        def spin() -> None:
            n = 0
            while not stop.is_set():
                n += 1
            counter[0] = n

        thread = threading.Thread(target=spin)
        start = time.perf_counter()
        thread.start()
        busy()
        stop.set()
        thread.join()
        return counter[0] / (time.perf_counter() - start)

    def in_thread() -> None:
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            sess.run(None, {inp.name: x})

    def in_process() -> None:
        code = (
            "import time, numpy as np, onnxruntime as ort\n"
            "o = ort.SessionOptions(); o.intra_op_num_threads = 1\n"
            f"s = ort.InferenceSession({str(model)!r}, o, providers=['CPUExecutionProvider'])\n"
            f"x = np.zeros({tuple(x.shape)!r}, np.float32); s.run(None, {{{inp.name!r}: x}})\n"
            "print('ready', flush=True)\n"
            f"end = time.perf_counter() + {seconds}\n"
            f"while time.perf_counter() < end: s.run(None, {{{inp.name!r}: x}})\n"
        )
        child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        child.wait()

    process = counter_speed(in_process)
    thread = counter_speed(in_thread)
    return {"python_thread_speed_during_run": round(thread / process, 3)}


def _static_hw(shape: list[Any], model: Path) -> tuple[int, int]:
    """(h, w) of the model input; dynamic axes take the imgsz from Ultralytics' metadata."""
    if isinstance(shape[2], int) and isinstance(shape[3], int):
        return shape[2], shape[3]
    from inspector.detector import OnnxDetector

    return OnnxDetector(model, warmup=False).imgsz


def worker_ultralytics(model: Path, source: Path, count: int, distinct: int, imgsz: int) -> dict[str, Any]:
    os.environ.setdefault("YOLO_OFFLINE", "1")
    from ultralytics import YOLO

    frames = _frames(source, distinct)
    yolo = YOLO(str(model), task="detect")
    for img in frames[:5]:
        yolo(img, imgsz=imgsz, verbose=False)
    start = time.perf_counter()
    for i in range(count):
        yolo(frames[i % len(frames)], imgsz=imgsz, verbose=False)
    elapsed = time.perf_counter() - start
    return {"fps": count / elapsed, "elapsed_s": elapsed}


def worker_pipeline(model: Path, source: Path, count: int, distinct: int, mode: str, rate: float | None, spin: bool):
    from inspector.bench_cli import run_bench

    frames = _frames(source, distinct)
    result = run_bench(model, frames, count=count, mode=mode, rate=rate, spinning=spin)  # type: ignore[arg-type]
    return {k: result[k] for k in ("fps", "latency_ms", "stage_ms", "sessions", "threads", "max_batch", "failsafe")}


def run_worker(args: argparse.Namespace) -> None:
    model, source = Path(args.model), Path(args.source)
    if args.worker == "gil":
        out = worker_gil(model)
    elif args.worker in {"bare", "bare_nospin", "bare_parallel"}:
        parallel, spin = args.worker == "bare_parallel", args.worker != "bare_nospin"
        out = worker_bare(model, source, args.count, args.distinct, parallel, spin)
    elif args.worker == "ultralytics":
        out = worker_ultralytics(model, source, args.count, args.distinct, args.imgsz)
    else:
        mode = "throughput" if args.worker == "pipeline" else "latency"
        out = worker_pipeline(model, source, args.count, args.distinct, mode, args.rate, args.worker == "latency_spin")
    print("RESULT " + json.dumps(out), flush=True)


# ------------------------------------------------------------------------------------------------ driver
def _cpu_busy(interval: float = 1.0) -> float:
    """Share of all CPUs busy over `interval` seconds (from /proc/stat), 0..1."""

    def sample() -> tuple[int, int]:
        with open("/proc/stat") as fh:
            fields = [int(v) for v in fh.readline().split()[1:]]
        idle = fields[3] + fields[4]  # idle + iowait
        return sum(fields), idle

    t0, i0 = sample()
    time.sleep(interval)
    t1, i1 = sample()
    return 1.0 - (i1 - i0) / max(t1 - t0, 1)


def wait_quiet(threshold: float, max_wait: float) -> float:
    """Wait (up to `max_wait` s) until other processes leave the machine idle; return the busy share last seen.

    The machine is shared: another job's burst in the middle of one variant would decide the comparison.
    """
    deadline = time.monotonic() + max_wait
    busy = _cpu_busy()
    while busy > threshold and time.monotonic() < deadline:
        busy = _cpu_busy()
    return round(busy, 3)


QUIET = {"threshold": 0.15, "max_wait": 90.0}
VARIANTS = ("bare", "bare_nospin", "bare_parallel", "ultralytics", "pipeline", "latency", "latency_spin")


def spawn(variant: str, model: Path, source: Path, count: int, distinct: int, imgsz: int, rate: float | None = None):
    cmd = [
        sys.executable,
        __file__,
        "--worker",
        variant,
        "--model",
        str(model),
        "--source",
        str(source),
        "--count",
        str(count),
        "--distinct",
        str(distinct),
        "--imgsz",
        str(imgsz),
    ]
    if rate:
        cmd += ["--rate", f"{rate:.3f}"]
    busy_before = wait_quiet(QUIET["threshold"], QUIET["max_wait"]) if QUIET["threshold"] < 1 else None
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, env={**os.environ, "YOLO_OFFLINE": "1"})
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{variant} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    result = json.loads(lines[-1][len("RESULT ") :])
    result["busy_before"] = busy_before
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[320, 640])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--quiet", type=float, default=0.15, help="wait for CPU use by others below this (0..1)")
    parser.add_argument("--source", type=Path, help="folder of images (default: DeepPCB val, else synthetic)")
    parser.add_argument("--distinct", type=int, default=100, help="distinct frames held in memory")
    parser.add_argument("--seconds", type=float, default=4.0, help="rough length of each measurement")
    parser.add_argument("--json-out", type=Path, help="write all figures here")
    # worker mode (internal)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--imgsz", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--rate", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        run_worker(args)
        return 0

    QUIET["threshold"] = args.quiet
    source = frames_folder(args.source)
    import onnxruntime

    report: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "affinity": len(os.sched_getaffinity(0)),
            "cpu": platform.processor() or platform.machine(),
            "python": platform.python_version(),
            "onnxruntime": onnxruntime.__version__,
        },
        "source": str(source),
        "distinct_frames": args.distinct,
        "sizes": {},
    }
    ok = True
    for imgsz in args.sizes:
        model = build_model(imgsz)
        # Frame counts sized so each measurement takes about --seconds at the rates DESIGN.md measured.
        base = {320: 80.0, 640: 20.0}.get(imgsz, 80.0 * (320 / imgsz) ** 2)
        n = max(40, int(base * args.seconds))
        gil = spawn("gil", model, source, 0, 1, imgsz)
        print(
            f"{imgsz}: a Python thread runs at {gil['python_thread_speed_during_run']:.2f} x its own speed "
            "beside a single-thread session.run loop in the same process, relative to the same loop in another process "
            "(1.0 = run releases the GIL)",
            flush=True,
        )
        rounds: list[dict[str, Any]] = []
        for r in range(args.rounds):
            row: dict[str, Any] = {}
            for variant in VARIANTS:
                count = n // 2 if variant == "ultralytics" else n
                row[variant] = spawn(variant, model, source, count, args.distinct, imgsz)
            # 80 % of the highest rate seen so far for the mode (a disturbed round must not lower the bar), for
            # twice as long as a throughput measurement: a p99 needs the samples
            for variant in ("latency", "latency_spin", "pipeline"):
                rate = 0.8 * max([row[variant]["fps"]] + [x[variant]["fps"] for x in rounds])
                count = max(80, int(rate * 2 * args.seconds))
                row[variant + "80"] = spawn(variant, model, source, count, args.distinct, imgsz, rate)
                row[variant + "80"]["rate"] = rate
            rounds.append(row)
            print(
                f"{imgsz} round {r + 1}: bare {row['bare']['fps']:.1f} (run {row['bare']['median_run_ms']:.2f} ms), "
                f"bare_parallel {row['bare_parallel']['fps']:.1f}, ultralytics {row['ultralytics']['fps']:.1f}, "
                f"pipeline {row['pipeline']['fps']:.1f}, latency {row['latency']['fps']:.1f}, "
                f"latency_spin {row['latency_spin']['fps']:.1f}, "
                f"bare_nospin run {row['bare_nospin']['median_run_ms']:.2f} ms, "
                f"latency80 p99 {row['latency80']['latency_ms']['p99']:.2f} ms at {row['latency80']['rate']:.1f}/s, "
                f"latency_spin80 p99 {row['latency_spin80']['latency_ms']['p99']:.2f} ms, "
                f"pipeline80 p99 {row['pipeline80']['latency_ms']['p99']:.2f} ms at {row['pipeline80']['rate']:.1f}/s "
                f"(others' CPU before each: {max(v['busy_before'] or 0 for v in row.values()):.0%} at most)",
                flush=True,
            )
        summary = summarise(rounds)
        ok &= summary["pass"]
        summary["gil_python_thread_speed"] = gil["python_thread_speed_during_run"]
        report["sizes"][str(imgsz)] = {"frames": n, "rounds": rounds, "summary": summary}
        print(json.dumps({str(imgsz): summary}, indent=1), flush=True)
    if args.json_out:
        args.json_out.write_text(json.dumps(report, indent=1))
    print("ALL CRITERIA MET" if ok else "SOME CRITERIA NOT MET")
    return 0 if ok else 1


def summarise(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians and bests over rounds, the ratios, and the criteria.

    Throughput ratios: the median of per-round ratios (variants measured minutes apart under the same
    conditions) decides; the ratio of each variant's best round is shown beside it. Latency, per mode at 80 % of
    its maximum rate: p99 capture-to-decision minus the median `session.run` time of the same session layout on
    pre-made tensors in the same round (`bare_nospin` for latency mode's one session on all cores, `bare` for
    the same with spinning, `bare_parallel` for throughput mode's single-thread sessions); the median over rounds
    of that excess must be <= 5 ms. Latency mode is also held against `bare` (the fastest median `session.run`
    of all layouts), shown beside it.
    """
    variants = VARIANTS
    best = {k: round(max(r[k]["fps"] for r in rounds), 2) for k in variants}
    median = {k: round(statistics.median(r[k]["fps"] for r in rounds), 2) for k in variants}

    def ratio(a: str, b: str) -> dict[str, float]:
        return {
            "median_of_rounds": round(statistics.median(r[a]["fps"] / r[b]["fps"] for r in rounds), 3),
            "best_vs_best": round(best[a] / best[b], 3),
            "per_round": [round(r[a]["fps"] / r[b]["fps"], 3) for r in rounds],
        }

    def latency(key: str, reference: str) -> dict[str, Any]:
        excess = [r[key]["latency_ms"]["p99"] - r[reference]["median_run_ms"] for r in rounds]
        return {
            "rate_per_s": round(statistics.median(r[key]["rate"] for r in rounds), 1),
            "p50_ms": round(statistics.median(r[key]["latency_ms"]["p50"] for r in rounds), 2),
            "p99_ms": round(statistics.median(r[key]["latency_ms"]["p99"] for r in rounds), 2),
            "inference_ms_in_run": round(statistics.median(r[key]["stage_ms"]["inference"]["p50"] for r in rounds), 2),
            "inference_p99_ms_in_run": round(
                statistics.median(r[key]["stage_ms"]["inference"]["p99"] for r in rounds), 2
            ),
            # what the pipeline adds at the tail: p99 latency over the p99 of its own session.run calls
            "p99_over_inference_p99_ms": round(
                statistics.median(r[key]["latency_ms"]["p99"] - r[key]["stage_ms"]["inference"]["p99"] for r in rounds),
                2,
            ),
            "reference_p99_run_ms": round(statistics.median(r[reference]["p99_run_ms"] for r in rounds), 2),
            "reference": reference,
            "reference_median_run_ms": round(statistics.median(r[reference]["median_run_ms"] for r in rounds), 2),
            "p99_excess_ms_per_round": [round(e, 2) for e in excess],
            "p99_excess_ms": round(statistics.median(excess), 2),
            "failsafe": sum(r[key]["failsafe"] for r in rounds),
        }

    out: dict[str, Any] = {
        "fps_best": best,
        "fps_median": median,
        "pipeline_vs_bare": ratio("pipeline", "bare"),
        "pipeline_vs_ultralytics": ratio("pipeline", "ultralytics"),
        "pipeline_vs_bare_parallel": ratio("pipeline", "bare_parallel"),
        "latency_mode_at_80": latency("latency80", "bare_nospin"),
        "latency_mode_at_80_vs_bare": latency("latency80", "bare"),
        "latency_mode_spinning_at_80": latency("latency_spin80", "bare"),
        "throughput_mode_at_80": latency("pipeline80", "bare_parallel"),
        "pipeline_layout": {k: rounds[0]["pipeline"][k] for k in ("sessions", "threads", "max_batch")},
    }
    out["criteria"] = {
        "pipeline >= 0.97 x bare": out["pipeline_vs_bare"]["median_of_rounds"] >= 0.97,
        "pipeline >= 1.2 x ultralytics": out["pipeline_vs_ultralytics"]["median_of_rounds"] >= 1.2,
        "latency mode: p99 at 80% <= median inference + 5 ms": out["latency_mode_at_80"]["p99_excess_ms"] <= 5.0,
    }
    # Throughput mode trades latency for parts per second by design (the setting the issue asks for); its tail is
    # reported, not held to the latency budget.
    out["throughput_mode_within_latency_budget"] = out["throughput_mode_at_80"]["p99_excess_ms"] <= 5.0
    out["pass"] = all(out["criteria"].values())
    return out


if __name__ == "__main__":
    sys.exit(main())
