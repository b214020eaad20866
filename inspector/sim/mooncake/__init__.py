"""Synthetic mooncake line: baked pastries with an embossed top, on a belt or tray, with known defects.

A second product beside the PCB line (`inspector.sim`), with the same public shapes: a deterministic line of parts
(`MooncakeLine.make_part`), a frame source (`MooncakeSource`), and writers for a YOLO dataset and a folder.

Each part is a top view (default 384x384 px, about 2.5 px per mm) of one mooncake: round, or (15 % of parts) a
rounded square, golden-brown with natural variation in tone, mottling, size, position, rotation and pattern depth.
The top is pressed from one of 16 moulds (12 round, 4 square): a scalloped rim, leaves or a ring of dots, an
inner ring, and a centre of character-like strokes, a flower or a sun. The pattern is a height map shaded as relief
under a directional light (with an egg-wash gloss); the cake casts a soft shadow on a dark conveyor belt, baking
paper or a perforated tray (drawn per part, so a model sees all three). Lighting drifts from part to part
(direction, brightness, colour temperature, a soft gradient) and every image carries camera noise.

A part is defect-free with probability `1 - defect_rate`; otherwise it carries 1..`max_defects` defects of six
classes (drawn uniformly), each with its size and contrast drawn uniformly from small and faint to large and
dark, so that some are borderline (measured on 150 parts: specks of under 30 changed pixels, pale patches and
smeared patterns whose pixels differ from the template by only 20-odd grey levels):

| id | class | drawn as |
| -- | --- | --- |
| 0 | crack | a thin jagged dark groove across the top, sometimes branching |
| 1 | burnt | a dark brown to black patch with a soft edge, often at the rim |
| 2 | misshapen | the outline dented, flattened (a cut chord) or bulging (a lump of overflowing dough) |
| 3 | blurred_imprint | the pattern missing (pressed flat) or smeared in a region |
| 4 | foreign_speck | a small dark, blue, red, green or grey particle on the top |
| 5 | underbaked | a pale patch, or the whole cake pale |

Boxes: `MooncakePart.boxes` are tight around the pixels each defect changed, where image and template (the same
part, same light and the same camera noise, without defects) differ by more than `DIFF_THRESHOLD` grey levels in
some channel; a defect whose change is too small to pass that threshold on enough pixels is not kept. Labels
(`label_boxes`, the YOLO files) add `LABEL_MARGIN` px a side so the smallest specks keep a box a detector can draw.

Everything is deterministic by (seed, part index), whatever order parts are made in; the cake (stream 0) and the
camera noise (stream 2) do not depend on whether the part is defective (stream 1), so the same part is the same
cake at defect rate 0 and 1. The renderer uses OpenCV's float filters, so a different OpenCV build may move a few
pixels by one grey level. `inspector sim mooncake --help` writes datasets, folders and contact sheets.

One job a module:

| module | job |
| --- | --- |
| `mould` | the 16 top patterns as strokes, each drawn once per size |
| `scene` | what defects do not change: placement, tone, background, lighting drift, camera noise |
| `render` | the cake's state and its shading as relief under the light, whole or in a window |
| `defects` | painting one defect of a class into the state, checked, with its tight box |
| `line` | `MooncakeLine`: part k of a seed, `MooncakePart`, `MOONCAKE_NAMES` |
| `source` | `MooncakeSource`: the line as a frame source |
| `datasets` | `write_dataset` (YOLO layout), `write_folder` (good/, bad/, truth.json), `contact_sheet` |
| `cli` | `inspector sim mooncake` (also `python -m inspector.sim.mooncake`) |
"""

from __future__ import annotations

from inspector.sim.mooncake.cli import main
from inspector.sim.mooncake.datasets import contact_sheet, write_dataset, write_folder
from inspector.sim.mooncake.defects import DIFF_THRESHOLD
from inspector.sim.mooncake.line import LABEL_MARGIN, MOONCAKE_NAMES, MooncakeLine, MooncakePart
from inspector.sim.mooncake.scene import BASE_SIZE
from inspector.sim.mooncake.source import MooncakeSource

__all__ = [
    "BASE_SIZE",
    "DIFF_THRESHOLD",
    "LABEL_MARGIN",
    "MOONCAKE_NAMES",
    "MooncakeLine",
    "MooncakePart",
    "MooncakeSource",
    "contact_sheet",
    "main",
    "write_dataset",
    "write_folder",
]
