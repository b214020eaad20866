"""Synthetic PCB production line: procedurally drawn DeepPCB-style parts with known defects, and a PLC simulator.

One job a module:

| module | job |
| --- | --- |
| `board` | the defect-free board: layout and drawing of the template |
| `defects` | painting one defect of a DeepPCB class, checked, with its tight box |
| `line` | `SyntheticLine`: part k of a seed (image, template, boxes), `PartTruth`; one product's golden reference |
| `jitter` | `Jitter`, `Placement`: a part's shift, rotation and light in the view, its boxes carried along |
| `source` | `SyntheticSource`: the line as a frame source (paced by `inspector.sources.Paced`) |
| `datasets` | `write_dataset` (YOLO layout), `write_folder` (good/, bad/, truth.json) |
| `cli` | `inspector sim` (also `python -m inspector.sim`) |
| `mooncake/` | the second product, a synthetic mooncake line: its own source, writers, `inspector sim mooncake` |
| `plc`, `plc_cli` | `PlcSimulator` (conveyor, triggers, reject gate, report) and `inspector plc-sim` |

Everything is deterministic by (seed, part index). The PLC simulator needs paho: import it from
`inspector.sim.plc`, not from here, so that drawing parts never loads MQTT; the mooncake line from
`inspector.sim.mooncake` (not imported here either).
"""

from __future__ import annotations

from inspector.sim.board import COPPER, PX_PER_MM, SUBSTRATE
from inspector.sim.cli import main
from inspector.sim.datasets import REFERENCE_FILE, write_dataset, write_folder
from inspector.sim.jitter import Jitter, Placement
from inspector.sim.line import LABEL_MARGIN, PartTruth, SyntheticLine, SyntheticPart
from inspector.sim.source import SyntheticSource

__all__ = [
    "COPPER",
    "LABEL_MARGIN",
    "PX_PER_MM",
    "REFERENCE_FILE",
    "SUBSTRATE",
    "Jitter",
    "PartTruth",
    "Placement",
    "SyntheticLine",
    "SyntheticPart",
    "SyntheticSource",
    "main",
    "write_dataset",
    "write_folder",
]
