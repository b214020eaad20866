"""The checks `inspector run` makes before its first part, runnable on their own: `inspector check-config` calls them
(the systemd unit runs it before every start), and `run` calls `check_source` so that a line that can never produce
a part fails at start instead of waiting forever.

- `check_models`: each recipe's model loads the way the line loads it (ONNX graph, Ultralytics metadata against the
  config's `names` / `imgsz` / `stride`, the self-test with `model.fallback` standing in for a failing file), the
  fallback file loads too, and the recipe's thresholds name only classes the model has.
- `check_source`: a folder source holds at least one image that decodes.

Each problem is a `ConfigIssue` naming the field and, through the loader's own message, the file.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from inspector.config import CameraConfig, ConfigIssue, LineConfig, ModelConfig
from inspector.types import SourceError, Thresholds

if TYPE_CHECKING:
    from inspector.detector import OnnxDetector

__all__ = ["check_models", "check_source"]


def check_source(camera: CameraConfig) -> list[ConfigIssue]:
    """A folder source that cannot give a single part (missing, empty, nothing decodes); [] otherwise.

    Streams and cameras are not opened here: a camera that is off at check time may well be on at start."""
    if camera.source != "folder":
        return []
    from inspector.sources import FolderSource

    source = FolderSource(camera.uri, truth=False)
    try:
        source.open()
        if source.read() is None:  # cannot happen after a successful open; kept for a clear answer if it does
            raise SourceError(f"no images in {camera.uri}")
    except SourceError as exc:
        return [ConfigIssue("camera.uri", f"the folder source can never produce a part: {exc}")]
    finally:
        source.close()
    return []


def _recipes(config: LineConfig) -> list[tuple[str, ModelConfig, str, Thresholds]]:
    """(model field, model config, thresholds field, thresholds) of each recipe, `default` first."""
    return [("model", config.model, "thresholds", config.thresholds)] + [
        (f"recipes.{name}.model", r.model, f"recipes.{name}.thresholds", r.thresholds)
        for name, r in config.recipes.items()
    ]


def check_models(config: LineConfig) -> list[ConfigIssue]:
    """Load and self-test every recipe's model (and its fallback) as `run` does; the problems found. Files that do
    not exist are left to `config.check_files`."""
    from inspector.detector import ModelError, load_detector  # onnxruntime loads here, not at import
    from inspector.selftest import checked_detector

    def load(cfg: ModelConfig) -> Callable[[], OnnxDetector]:
        return lambda: load_detector(cfg, warmup=False, max_batch=1)

    issues: list[ConfigIssue] = []
    for where, model, thresholds_where, thresholds in _recipes(config):
        spare = model.model_copy(update={"path": model.fallback, "fallback": None}) if model.fallback else None
        names: dict[int, str] | None = None
        if Path(model.path).is_file():  # a missing file is `config.check_files`'s to report
            try:
                usable = spare if spare is not None and Path(spare.path).is_file() else None
                detector, _, _ = checked_detector(load(model), load(usable) if usable is not None else None)
                names = dict(detector.names)
            except ModelError as exc:
                issues.append(ConfigIssue(f"{where}.path", str(exc)))
        if spare is not None and Path(spare.path).is_file():
            try:  # the fallback is loaded above only when the model failed: it must be usable either way
                load(spare)()
            except ModelError as exc:
                issues.append(ConfigIssue(f"{where}.fallback", str(exc)))
        if names is not None:
            unknown = sorted(set(thresholds.classes) - set(names.values()))
            if unknown:
                issues.append(
                    ConfigIssue(
                        f"{thresholds_where}.classes",
                        f"classes {unknown} are not in the model's classes {sorted(names.values())} "
                        f"({Path(model.path).name}): those thresholds would never apply",
                    )
                )
    return issues
