"""Recipe packages: one folder per product (`recipes/<name>/recipe.yaml`) holding what a changeover switches.

A package names its model file, its thresholds, its classes (names and dashboard colours), a golden reference if
its model compares with one, the part's geometry and the product's gate budget:

    description: DeepPCB-style bare boards, YOLOv8n at 480 px, int8
    model: deeppcb-v8n-480-int8.onnx        # or {path: ..., conf: 0.25, fallback: ...} (ModelConfig fields)
    thresholds: deeppcb-v8n-480-int8-synthetic.yaml   # or the rules inline (Thresholds fields)
    classes:                                # in class id order; names must be the model's
      - {name: open, colour: "#e6194b"}
    reference: null                         # image file (or ReferenceConfig fields), for a reference-diff model
    part: {shape: rectangle, width_mm: 40, height_mm: 40, image_px: [640, 640]}
    gate_ms: 2000                           # none: the line's pipeline.gate_ms
    synthetic: pcb                          # the demo's synthetic line for this product
    synthetic_board: 0                      # pcb: one board design with jitter (its golden render: reference.png)

Files are looked up in the package folder first, then on `inspector.resources`' search path (`models/<name>` for
model files, `calibration/<name>` for thresholds), so a package can name the shipped files without copying them.
The recipe's name is `name:` when given, else the folder's name.

`load_package` turns a package into a `RecipeConfig` (what a line config's `recipes:` entries are), failing with a
`ConfigError` that names each bad field and its line; `check_package` also opens the model to compare its metadata
(class names, input kind) with the package. `inspector recipe check DIR` prints what `check_package` finds.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from inspector.config import (
    ClassStyle,
    ConfigError,
    ConfigIssue,
    ModelConfig,
    PartGeometry,
    RecipeConfig,
    ReferenceConfig,
)
from inspector.config.loader import read_yaml, validation_issues
from inspector.resources import RECIPE_FILE, data_dirs, find_calibration, find_model, find_recipe, recipe_packages
from inspector.types import Thresholds

__all__ = [
    "INPUT_METADATA_KEY",
    "REFERENCE_DIFF",
    "PackageFile",
    "add_packages",
    "check_package",
    "load_package",
    "main",
    "model_facts",
    "package_dir",
    "recipe_card",
]

# What a model says about its input in its ONNX metadata (issue 15: `inspector.detector.metadata.read_input_kind`):
# a reference model's input is the frame composed with its recipe's golden reference.
INPUT_METADATA_KEY = "inspector.input"
REFERENCE_DIFF = "reference-diff"


def _find(folder: Path, value: str, kind: Literal["models", "calibration"]) -> Path:
    """`value` as a file: absolute, else in the package folder, else `kind/<value>` on the search path; a file
    found nowhere raises ValueError naming every place looked at."""
    path = Path(value).expanduser()
    if path.is_absolute():
        if path.is_file():
            return path
        raise ValueError(f"file not found: {path}")
    local = folder / path
    if local.is_file():
        return local.resolve()
    shared = find_model(value) if kind == "models" else find_calibration(value)
    if shared is not None and shared.is_file():
        return shared.resolve()
    places = [str(local)] + [str(d / kind / value) for d in data_dirs()]
    raise ValueError(f"file not found: {value} (looked in {', '.join(places)})")


def _folder(info: ValidationInfo) -> Path:
    return Path((info.context or {}).get("folder", "."))


class _PackageModel(ModelConfig):
    """The package's `model:` section: `ModelConfig`'s fields, the file names found as `_find` says."""

    path: Path
    fallback: Path | None = None

    @field_validator("path", "fallback", mode="before")
    @classmethod
    def _resolve(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None or not isinstance(value, str | Path):
            return value
        return _find(_folder(info), str(value), "models")


class PackageFile(BaseModel):
    """`recipe.yaml` as written (see the module docstring). Unknown fields are errors."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, pattern=r"^[A-Za-z0-9_.-]{1,64}$", description="default: the folder's name")
    description: str = ""
    model: _PackageModel
    thresholds: Thresholds = Thresholds()
    classes: list[ClassStyle] | None = None
    reference: ReferenceConfig = ReferenceConfig()
    part: PartGeometry | None = None
    gate_ms: float | None = Field(None, gt=0)
    synthetic: Literal["pcb", "mooncake"] | None = None
    synthetic_board: int | None = Field(None, ge=0)

    @model_validator(mode="after")
    def _board_is_pcb(self) -> PackageFile:
        if self.synthetic_board is not None and self.synthetic != "pcb":
            raise ValueError("synthetic_board is a board of the synthetic pcb line: it needs synthetic: pcb")
        return self

    @field_validator("model", mode="before")
    @classmethod
    def _model_file(cls, value: Any) -> Any:
        return {"path": value} if isinstance(value, str) else value  # `model: file.onnx` is short for {path: ...}

    @field_validator("thresholds", mode="before")
    @classmethod
    def _thresholds_file(cls, value: Any, info: ValidationInfo) -> Any:
        if not isinstance(value, str):
            return value
        path = _find(_folder(info), value, "calibration")
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
            return Thresholds.model_validate(data or {})
        except (OSError, yaml.YAMLError) as exc:
            raise ValueError(f"cannot read thresholds file {path}: {exc}") from None
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "<top>"
            raise ValueError(f"thresholds file {path}: {where}: {first['msg']}") from None

    @field_validator("reference", mode="before")
    @classmethod
    def _reference_file(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None:
            return {}
        if isinstance(value, str):  # `reference: golden.png` is short for {image: golden.png}
            value = {"image": value}
        if isinstance(value, dict) and isinstance(value.get("image"), str):
            value = {**value, "image": _find(_folder(info), value["image"], "models")}
        return value

    def recipe(self, folder: Path) -> tuple[str, RecipeConfig]:
        """(recipe name, its `RecipeConfig`)."""
        model = ModelConfig.model_validate(self.model.model_dump())
        if self.classes and model.names is None:  # also the names of a model without metadata
            model = model.model_copy(update={"names": {i: c.name for i, c in enumerate(self.classes)}})
        fields = self.model_dump(exclude={"name", "model", "thresholds", "classes", "part"})
        config = RecipeConfig(
            model=model, thresholds=self.thresholds, classes=self.classes, part=self.part, package=folder, **fields
        )
        return self.name or folder.name, config


def package_dir(ref: str | Path) -> Path:
    """The package folder `ref` means: a folder holding recipe.yaml, the recipe.yaml itself, or a package name
    found as `recipes/<name>/` on the data search path."""
    path = Path(ref).expanduser()
    if path.name == RECIPE_FILE and path.is_file():
        return path.parent
    if (path / RECIPE_FILE).is_file() or len(path.parts) > 1 or path.is_absolute():
        return path
    return find_recipe(str(ref))


def load_package(ref: str | Path) -> tuple[str, RecipeConfig]:
    """(recipe name, `RecipeConfig`) of the package `ref` (see `package_dir`). Raises `ConfigError` naming each
    bad field with its line in recipe.yaml (a missing file is one error, at the line of the field naming it)."""
    folder = package_dir(ref)
    recipe_file = folder / RECIPE_FILE
    if not recipe_file.is_file():
        known = ", ".join(recipe_packages()) or "none"
        raise ConfigError(str(recipe_file), [ConfigIssue("", f"no recipe package here (packages found: {known})")])
    data, lines = read_yaml(recipe_file)
    try:
        package = PackageFile.model_validate(data, context={"folder": folder})
    except ValidationError as exc:
        raise ConfigError(str(recipe_file), validation_issues(exc, lines, {})) from None
    return package.recipe(folder.resolve())


def add_packages(recipes: dict[str, RecipeConfig], refs: list[str]) -> None:
    """Add each package of `refs` to `recipes` by its name (a line config's `recipe_packages`). Raises ValueError
    for a package that does not load or whose name is taken by another recipe."""
    for ref in refs:
        try:
            name, recipe = load_package(ref)
        except ConfigError as exc:
            raise ValueError(f"recipe package {exc.source}: {'; '.join(str(i) for i in exc.issues)}") from None
        if name == "default":
            raise ValueError(f"recipe package {ref}: the name 'default' is the line's own model and thresholds")
        if name in recipes and recipes[name] != recipe:
            raise ValueError(f"recipe package {ref}: a recipe named {name!r} is defined twice")
        recipes[name] = recipe


def recipe_card(name: str, recipe: RecipeConfig | None, names: Mapping[int, str] | None) -> dict[str, Any]:
    """What the dashboard shows of a recipe: name, description, classes (`names`: the model's, else the recipe's
    `classes`) with their colours (the recipe's, else `inspector.palette`'s), gate budget, part geometry."""
    from inspector.palette import class_colours

    styles = recipe.classes if recipe is not None else None
    if names is None:
        names = {i: c.name for i, c in enumerate(styles or [])}
    colours = class_colours(names, styles)
    return {
        "name": name,
        "description": recipe.description if recipe is not None else "",
        "classes": [{"id": i, "name": names[i], "colour": colours[i]} for i in sorted(names)],
        "gate_ms": recipe.gate_ms if recipe is not None else None,
        "part": recipe.part.model_dump() if recipe is not None and recipe.part is not None else None,
    }


def model_facts(path: Path) -> tuple[dict[int, str] | None, str]:
    """(class names from the model's metadata or None, its input kind: `image` or `reference-diff`). Reads the
    metadata only (an onnxruntime session is made, not warmed up)."""
    import onnxruntime as ort  # not at import: the config module imports this one

    from inspector.detector.metadata import parse_metadata, read_input_kind

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    meta = parse_metadata(dict(session.get_modelmeta().custom_metadata_map))
    names = meta.get("names")
    named = {int(k): str(v) for k, v in names.items()} if isinstance(names, dict) and names else None
    return named, read_input_kind(path, meta)


def check_package(ref: str | Path) -> tuple[str | None, list[ConfigIssue]]:
    """(recipe name or None, every problem of the package `ref`): what `load_package` finds, then what needs the
    model: its class names against `classes:` and the thresholds, its input kind against `reference:`."""
    try:
        name, recipe = load_package(ref)
    except ConfigError as exc:
        return None, exc.issues
    recipe_file = package_dir(ref) / RECIPE_FILE
    _, lines = read_yaml(recipe_file)
    try:
        names, input_kind = model_facts(recipe.model.path)
    except Exception as exc:  # onnxruntime raises its own types for a file that is not ONNX
        message = f"{recipe.model.path} is not a loadable ONNX model ({type(exc).__name__}: {str(exc)[:200]})"
        return name, [ConfigIssue("model", message, lines.get(("model",)))]
    issues = []
    listed = [c.name for c in recipe.classes] if recipe.classes else None
    if names is not None and listed is not None and listed != [names[i] for i in sorted(names)]:
        issues.append(
            ConfigIssue(
                "classes",
                f"the classes {listed} disagree with the model's metadata: {[names[i] for i in sorted(names)]} "
                f"({recipe.model.path.name}); list the model's classes in class id order",
                lines.get(("classes",)),
            )
        )
    known = names or ({i: n for i, n in enumerate(listed)} if listed else None)
    if known is None:
        issues.append(ConfigIssue("classes", "the model has no class names in its metadata: list them under classes"))
    else:
        unknown = sorted(set(recipe.thresholds.classes) - set(known.values()))
        if unknown:
            issues.append(
                ConfigIssue(
                    "thresholds",
                    f"thresholds for classes the model does not have: {unknown}; its classes: {list(known.values())}",
                    lines.get(("thresholds",)),
                )
            )
    if input_kind == REFERENCE_DIFF and recipe.reference.image is None:
        issues.append(
            ConfigIssue(
                "reference",
                f"{recipe.model.path.name} is a reference model ({INPUT_METADATA_KEY}: {REFERENCE_DIFF}): "
                "name the product's golden reference image",
                lines.get(("reference",)) or lines.get(("model",)),
            )
        )
    elif input_kind != REFERENCE_DIFF and recipe.reference.image is not None:
        issues.append(
            ConfigIssue(
                "reference",
                f"{recipe.model.path.name} takes plain images ({INPUT_METADATA_KEY}: {input_kind}): it cannot use a "
                "golden reference; remove reference or use a reference model",
                lines.get(("reference",)),
            )
        )
    return name, issues


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="inspector recipe", description="recipe packages (recipes/<name>/)")
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check", help="validate recipe packages: files, fields, classes against the model")
    check.add_argument("packages", nargs="+", metavar="DIR", help="package folder (or recipe.yaml, or a name)")
    sub.add_parser("list", help="the recipe packages on the data search path")
    args = parser.parse_args(argv)
    if args.command == "list":
        for name, folder in recipe_packages().items():
            print(f"{name}\t{folder}")
        return 0
    failed = 0
    for ref in args.packages:
        name, issues = check_package(ref)
        where = package_dir(ref) / RECIPE_FILE
        if issues:
            failed += 1
            print(ConfigError(str(where), issues), file=sys.stderr)
        else:
            _, recipe = load_package(ref)
            classes = len(recipe.classes) if recipe.classes else "metadata"
            print(f"{where}: OK: recipe {name}, model {recipe.model.path.name}, classes {classes}")
    return 1 if failed else 0
