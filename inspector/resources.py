"""Where the shipped models and thresholds files are found: one documented search path, so that a wheel install,
a checkout and a container all find the default model without reaching for paths relative to the package.

Search order for `models/<name>` and `calibration/<name>`:

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

__all__ = ["DATA_ENV", "DEFAULT_MODEL_NAME", "data_dirs", "find_calibration", "find_model"]

DATA_ENV = "INSPECTOR_DATA"
DEFAULT_MODEL_NAME = "deeppcb-v8n-480-int8.onnx"
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
