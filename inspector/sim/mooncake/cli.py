"""`inspector sim mooncake`: synthetic mooncake data from the shell (a YOLO dataset, a labelled folder, a contact
sheet) and the generator's timing.

    inspector sim mooncake dataset data/mooncake -n 1200 --seed 1 --defect-rate 0.6 --size 320
    inspector sim mooncake folder /tmp/cakes -n 200
    inspector sim mooncake sheet /tmp/sheet.png -n 24 --templates
    inspector sim mooncake bench -n 100

`python -m inspector.sim.mooncake` is the same command.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from inspector.sim.cli import line_parser, run, standard_actions
from inspector.sim.datasets import imwrite
from inspector.sim.mooncake.datasets import contact_sheet, write_dataset, write_folder
from inspector.sim.mooncake.line import MooncakeLine
from inspector.sim.mooncake.scene import BASE_SIZE

__all__ = ["main"]

_DESCRIPTION = "Synthetic mooncake line: baked pastries with an embossed top, on a belt or tray, with known defects."


def _sheet(args: argparse.Namespace) -> dict[str, Any]:
    line = MooncakeLine(args.seed, args.defect_rate, args.size)
    parts = [line.make_part(i) for i in range(args.start, args.start + args.n)]
    imwrite(args.out, contact_sheet(parts, args.cols, args.templates))
    return {"out": str(args.out), "parts": args.n}


def main(argv: list[str] | None = None, prog: str = "inspector sim mooncake") -> int:
    """`inspector sim mooncake {dataset,folder,bench,sheet}`: write synthetic data or time the generator.

    Exit 0, or 1 on error.
    """
    parser, sub, common = line_parser(prog, _DESCRIPTION, size=BASE_SIZE, bench_n=100)
    p = sub.add_parser("sheet", parents=[common], help="write a contact sheet PNG with the boxes drawn")
    p.add_argument("out", type=Path)
    p.add_argument("-n", type=int, default=24)
    p.add_argument("--start", type=int, default=0)
    p.add_argument("--cols", type=int, default=6)
    p.add_argument("--defect-rate", type=float, default=1.0)
    p.add_argument("--templates", action="store_true", help="put each part's template beside it")
    actions = standard_actions(write_dataset, write_folder, MooncakeLine) | {"sheet": _sheet}
    return run(parser.parse_args(argv), prog, actions)
