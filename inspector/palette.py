"""Class colours for the dashboard: a recipe's own (`classes:` of its package), else this palette by class id.

Twelve colours that stay apart from one another on a dark or a light background and for the common colour-vision
deficiencies (Paul Tol's "muted" and "bright" schemes), so that two defect classes of one recipe never share one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from inspector.config import ClassStyle

__all__ = ["PALETTE", "class_colours"]

PALETTE: tuple[str, ...] = (
    "#ee6677",
    "#4477aa",
    "#ccbb44",
    "#66ccee",
    "#aa3377",
    "#228833",
    "#ee8866",
    "#77aadd",
    "#eedd88",
    "#ffaabb",
    "#99ddff",
    "#44bb99",
)


def class_colours(names: Mapping[int, str], styles: Sequence[ClassStyle] | None = None) -> dict[int, str]:
    """Class id -> #rrggbb for the model's classes `names`: the recipe's colour where its `classes` gives one for
    that id, else the palette's (cycled)."""
    styles = styles or []
    return {
        cid: (styles[cid].colour if cid < len(styles) and styles[cid].colour else PALETTE[cid % len(PALETTE)])
        for cid in sorted(names)
    }
