"""`inspector sim`: synthetic PCB data from the shell (a YOLO dataset, a labelled folder) and the generator's timing.

    inspector sim dataset data/synthetic -n 500 --defect-rate 0.5 --val-fraction 0.2
    inspector sim folder /tmp/parts -n 200
    inspector sim bench -n 200

`python -m inspector.sim` is the same command.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from inspector.sim.datasets import write_dataset, write_folder
from inspector.sim.line import SyntheticLine

__all__ = ["main"]

_DESCRIPTION = "Synthetic PCB production line: procedurally drawn DeepPCB-style parts with known defects."


def _parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=_DESCRIPTION)
    sub = parser.add_subparsers(dest="action", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--seed", type=int, default=0)
    common.add_argument("--size", type=int, default=640)
    p = sub.add_parser("dataset", parents=[common], help="write a YOLO dataset (images, labels, data.yaml)")
    p.add_argument("out", type=Path)
    p.add_argument("-n", type=int, default=500)
    p.add_argument("--defect-rate", type=float, default=0.5)
    p.add_argument("--val-fraction", type=float, default=0.2)
    p = sub.add_parser("folder", parents=[common], help="write good/ and bad/ images with truth.json")
    p.add_argument("out", type=Path)
    p.add_argument("-n", type=int, default=100)
    p.add_argument("--defect-rate", type=float, default=0.3)
    p = sub.add_parser("bench", parents=[common], help="time part generation")
    p.add_argument("-n", type=int, default=200)
    p.add_argument("--defect-rate", type=float, default=1.0)
    return parser


def _bench(n: int, seed: int, defect_rate: float, size: int) -> dict[str, float]:
    """Milliseconds per part over parts 0..n-1: mean, p50, p95, max."""
    line = SyntheticLine(seed, defect_rate, size)
    times = []
    for i in range(n):
        t0 = time.perf_counter()
        line.make_part(i)
        times.append((time.perf_counter() - t0) * 1e3)
    ms = np.array(times)
    return {
        "ms_mean": round(float(ms.mean()), 2),
        "ms_p50": round(float(np.median(ms)), 2),
        "ms_p95": round(float(np.percentile(ms, 95)), 2),
        "ms_max": round(float(ms.max()), 2),
    }


def main(argv: list[str] | None = None, prog: str = "inspector sim") -> int:
    """`inspector sim {dataset,folder,bench}`: write synthetic data or time the generator. Exit 0, or 1 on error."""
    args = _parser(prog).parse_args(argv)
    try:
        if args.action == "dataset":
            counts = write_dataset(args.out, args.n, args.seed, args.defect_rate, args.val_fraction, args.size)
            print(json.dumps({"out": str(args.out), **counts}))
        elif args.action == "folder":
            manifest = write_folder(args.out, args.n, args.seed, args.defect_rate, args.size)
            print(json.dumps({"out": str(args.out), "manifest": str(manifest), "parts": args.n}))
        else:
            timing = _bench(args.n, args.seed, args.defect_rate, args.size)
            print(json.dumps({"parts": args.n, "size": args.size, "defect_rate": args.defect_rate, **timing}))
    except (OSError, ValueError) as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 1
    return 0
