"""Where the shipped models and thresholds files are found: one documented search path, so that a wheel install,
a checkout and a container all find the default model without reaching for paths relative to the package.

Search order for `models/<name>`, `calibration/<name>` and recipe packages `recipes/<name>/`:

1. `$INSPECTOR_DATA` (a folder holding `models/` and `calibration/`), when set: an integrator's own files win;
2. the source checkout the package runs from (the folder above `inspector/`, when it holds `models/`): a developer
   or an editable install sees the repository's files, checkpoints and all;
3. `<prefix>/share/inspector` of the Python environment (`sys.prefix`): where a wheel install puts the default
   model, its self-test record and its thresholds (`[tool.setuptools.data-files]` in pyproject.toml).

A name found nowhere resolves to its place in the first candidate folder, so an error message names a real path.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

__all__ = [
    "DATA_ENV",
    "DEFAULT_MODEL_NAME",
    "RECIPE_FILE",
    "REFERENCE_MODEL_NAME",
    "data_dirs",
    "find_calibration",
    "find_model",
    "find_recipe",
    "recipe_packages",
]

DATA_ENV = "INSPECTOR_DATA"
DEFAULT_MODEL_NAME = "deeppcb-v8n-480-int8.onnx"  # reference-free: a line config that names no model or reference
REFERENCE_MODEL_NAME = "deeppcb-ref-v8n-480-int8.onnx"  # the PCB recipe's and the demo's (issue 15)
RECIPE_FILE = "recipe.yaml"  # what makes a folder a recipe package
_CHECKOUT = Path(__file__).resolve().parent.parent


def data_dirs() -> list[Path]:
    """The folders searched, in order (module docstring); only those that exist, except `$INSPECTOR_DATA`."""
    dirs: list[Path] = []
    if os.environ.get(DATA_ENV):
        dirs.append(Path(os.environ[DATA_ENV]))
    if (_CHECKOUT / "models").is_dir():
        dirs.append(_CHECKOUT)
    installed = Path(sys.prefix) / "share" / "inspector"
    if installed.is_dir():
        dirs.append(installed)
    return dirs or [_CHECKOUT]


def _find(kind: str, name: str) -> Path:
    dirs = data_dirs()
    for folder in dirs:
        candidate = folder / kind / name
        if candidate.is_file():
            return candidate
    return dirs[0] / kind / name


def find_model(name: str = DEFAULT_MODEL_NAME) -> Path:
    """`models/<name>` from the first folder of the search path that has it."""
    return _find("models", name)


def find_calibration(name: str) -> Path | None:
    """`calibration/<name>` from the first folder of the search path that has it, else None."""
    path = _find("calibration", name)
    return path if path.is_file() else None


def find_recipe(name: str) -> Path:
    """The package folder `recipes/<name>/` (holding `recipe.yaml`) from the first folder of the search path that
    has it; a name found nowhere resolves to its place in the first folder."""
    dirs = data_dirs()
    for folder in dirs:
        if (folder / "recipes" / name / RECIPE_FILE).is_file():
            return folder / "recipes" / name
    return dirs[0] / "recipes" / name


def recipe_packages() -> dict[str, Path]:
    """Every recipe package on the search path by folder name (the first folder that has a name wins), sorted."""
    found: dict[str, Path] = {}
    for folder in data_dirs():
        for recipe_file in sorted((folder / "recipes").glob(f"*/{RECIPE_FILE}")):
            found.setdefault(recipe_file.parent.name, recipe_file.parent)
    return dict(sorted(found.items()))
