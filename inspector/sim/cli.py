"""`inspector sim`: synthetic PCB data from the shell (a YOLO dataset, a labelled folder) and the generator's timing.

    inspector sim dataset data/synthetic -n 500 --defect-rate 0.5 --val-fraction 0.2
    inspector sim folder /tmp/parts -n 200
    inspector sim folder /tmp/product -n 200 --board-seed 3 --jitter   (one product, its reference.png, jittered)
    inspector sim bench -n 200
    inspector sim mooncake {dataset,folder,sheet,bench} ...   (the mooncake line: `inspector.sim.mooncake.cli`)

`python -m inspector.sim` is the same command.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from inspector.sim.datasets import REFERENCE_FILE, write_dataset, write_folder
from inspector.sim.jitter import Jitter
from inspector.sim.line import PartMaker, SyntheticLine

__all__ = ["Action", "line_parser", "main", "run", "standard_actions", "time_parts"]

_DESCRIPTION = "Synthetic PCB production line: procedurally drawn DeepPCB-style parts with known defects."

# An action: the parsed arguments -> the JSON object it prints.
Action = Callable[[argparse.Namespace], dict[str, Any]]


def line_parser(
    prog: str, description: str, size: int, bench_n: int
) -> tuple[argparse.ArgumentParser, Any, argparse.ArgumentParser]:
    """The `dataset`, `folder` and `bench` sub-commands of a line's command: (parser, its sub-parsers, the parent
    with `--seed` and `--size`) so that a line can add its own."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    sub = parser.add_subparsers(dest="action", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--seed", type=int, default=0)
    common.add_argument("--size", type=int, default=size)
    p = sub.add_parser("dataset", parents=[common], help="write a YOLO dataset (images, labels, data.yaml)")
    p.add_argument("out", type=Path)
    p.add_argument("-n", type=int, default=500)
    p.add_argument("--defect-rate", type=float, default=0.5)
    p.add_argument("--val-fraction", type=float, default=0.2)
    p.add_argument(
        "--image-ext",
        choices=["jpg", "png"],
        default="jpg",
        help="image files: jpg (quality 95, as DeepPCB's) or png (the frames exactly as the line hands them on)",
    )
    p = sub.add_parser("folder", parents=[common], help="write good/ and bad/ images with truth.json")
    p.add_argument("out", type=Path)
    p.add_argument("-n", type=int, default=100)
    p.add_argument("--defect-rate", type=float, default=0.3)
    p = sub.add_parser("bench", parents=[common], help="time part generation")
    p.add_argument("-n", type=int, default=bench_n)
    p.add_argument("--defect-rate", type=float, default=1.0)
    return parser, sub, common


def time_parts(make_part: Callable[[int], object], n: int) -> dict[str, float]:
    """Milliseconds per part over `make_part(0..n-1)`: mean, p50, p95, max."""
    times = []
    for i in range(n):
        t0 = time.perf_counter()
        make_part(i)
        times.append((time.perf_counter() - t0) * 1e3)
    ms = np.array(times)
    return {
        "ms_mean": round(float(ms.mean()), 2),
        "ms_p50": round(float(np.median(ms)), 2),
        "ms_p95": round(float(np.percentile(ms, 95)), 2),
        "ms_max": round(float(ms.max()), 2),
    }


def standard_actions(
    write_dataset: Callable[..., dict[str, int]],
    write_folder: Callable[..., Path],
    line: Callable[[int, float, int], PartMaker],
) -> dict[str, Action]:
    """`dataset`, `folder` and `bench` for a line's writers and its class (called with seed, defect rate, size)."""

    def dataset(args: argparse.Namespace) -> dict[str, Any]:
        counts = write_dataset(
            args.out, args.n, args.seed, args.defect_rate, args.val_fraction, args.size, image_ext=args.image_ext
        )
        return {"out": str(args.out), **counts}

    def folder(args: argparse.Namespace) -> dict[str, Any]:
        manifest = write_folder(args.out, args.n, args.seed, args.defect_rate, args.size)
        return {"out": str(args.out), "manifest": str(manifest), "parts": args.n}

    def bench(args: argparse.Namespace) -> dict[str, Any]:
        timing = time_parts(line(args.seed, args.defect_rate, args.size).make_part, args.n)
        return {"parts": args.n, "size": args.size, "defect_rate": args.defect_rate, **timing}

    return {"dataset": dataset, "folder": folder, "bench": bench}


def run(args: argparse.Namespace, prog: str, actions: dict[str, Action]) -> int:
    """Run `args.action` and print its JSON result. Exit 0, or 1 (the error on stderr) on OSError or ValueError."""
    try:
        print(json.dumps(actions[args.action](args)))
    except (OSError, ValueError) as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None, prog: str = "inspector sim") -> int:
    """`inspector sim {dataset,folder,bench,mooncake}`: write synthetic data or time the generator. Exit 0, or 1 on
    error. `mooncake ...` runs the mooncake line's command (imported only then)."""
    args_in = list(sys.argv[1:] if argv is None else argv)
    if args_in[:1] == ["mooncake"]:
        from inspector.sim.mooncake.cli import main as mooncake_main

        return mooncake_main(args_in[1:], prog=f"{prog} mooncake")
    parser, sub, _ = line_parser(prog, _DESCRIPTION, size=640, bench_n=200)
    for name in ("dataset", "folder", "bench"):
        p = sub.choices[name]
        p.add_argument(
            "--board-seed",
            type=int,
            default=None,
            help=f"one product: every part is this board design; its golden reference is OUT/{REFERENCE_FILE}",
        )
        p.add_argument(
            "--jitter",
            action="store_true",
            help="place parts with jitter: shift of a few px, rotation up to 1 degree, drifting light, noise",
        )
    # Parsed by `inspector.sim.mooncake.cli` (main hands it the rest of the line); listed here for --help.
    sub.add_parser("mooncake", help="the synthetic mooncake line: dataset, folder, sheet, bench (see its --help)")
    args = parser.parse_args(args_in)
    product = {"board_seed": args.board_seed, "jitter": Jitter() if args.jitter else None}
    actions = standard_actions(
        partial(write_dataset, **product),
        partial(write_folder, **product),
        lambda seed, defect_rate, size: SyntheticLine(seed=seed, defect_rate=defect_rate, size=size, **product),
    )
    if args.board_seed is not None:
        for name in ("dataset", "folder"):
            actions[name] = _with_reference(actions[name])
    return run(args, prog, actions)


def _with_reference(action: Action) -> Action:
    """`action`, its result also naming the reference image it wrote."""

    def with_reference(args: argparse.Namespace) -> dict[str, Any]:
        return {**action(args), "reference": str(args.out / REFERENCE_FILE)}

    return with_reference
