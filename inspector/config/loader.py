"""Reading a line config: the YAML file, `INSPECTOR_<SECTION>__<KEY>` environment overrides, errors that name
the field and its YAML line (or variable), and `check_files` for what pydantic cannot see."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from inspector.config.line import LineConfig
from inspector.redact import redact_text

__all__ = ["ENV_PREFIX", "ConfigError", "ConfigIssue", "check_files", "load_config", "read_yaml", "validation_issues"]

ENV_PREFIX = "INSPECTOR_"


@dataclass(frozen=True, slots=True)
class ConfigIssue:
    """One thing wrong with a config: the field path (`camera.uri`), the YAML line (1-based) or the environment
    variable it came from, and what is wrong. A warning is reported but does not make the config unusable (a USB
    camera that is unplugged now: the line retries until it appears, so a start-up check must not refuse it)."""

    path: str
    message: str
    line: int | None = None
    env: str | None = None
    warning: bool = False

    def __str__(self) -> str:
        where = f" (line {self.line})" if self.line else f" (from ${self.env})" if self.env else ""
        return f"{self.path or '<top>'}{where}: {self.message}"


class ConfigError(ValueError):
    """A line config that cannot be used. `issues` lists each problem; the message has one per line."""

    def __init__(self, source: str, issues: list[ConfigIssue]) -> None:
        self.source = source
        self.issues = issues
        lines = "\n".join(f"  {issue}" for issue in issues)
        super().__init__(f"{source}: {len(issues)} problem{'s' if len(issues) != 1 else ''}\n{lines}")


def _key_lines(node: yaml.Node, prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], int]:
    """Map each field path in a composed YAML tree to the 1-based line where its key (or item) starts."""
    lines: dict[tuple[str, ...], int] = {}
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            path = (*prefix, str(key_node.value))
            lines[path] = key_node.start_mark.line + 1
            lines.update(_key_lines(value_node, path))
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            path = (*prefix, str(i))
            lines[path] = item.start_mark.line + 1
            lines.update(_key_lines(item, path))
    return lines


def read_yaml(path: Path) -> tuple[dict[str, Any], dict[tuple[str, ...], int]]:
    """The file's mapping and its key lines; raises ConfigError on unreadable or malformed YAML."""
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(source, [ConfigIssue("", f"cannot read the file: {exc.strerror or exc}")]) from exc
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(source, [ConfigIssue("", f"not valid YAML: {problem}", line)]) from exc
    if data is None:
        return {}, {}
    if not isinstance(data, dict):
        raise ConfigError(source, [ConfigIssue("", f"the top level must be a mapping, not {type(data).__name__}", 1)])
    return data, _key_lines(node) if node is not None else {}


def _apply_env(data: dict[str, Any], env: Mapping[str, str]) -> dict[tuple[str, ...], str]:
    """Apply `INSPECTOR_<SECTION>__<KEY>[__<KEY>...]` overrides to `data` in place; return path -> variable.

    Names match existing keys case-insensitively (so `recipes` names keep their case) and are lower-cased
    otherwise; values are parsed as YAML scalars (`1500` is an int, `true` a bool, `[a, b]` a list).
    A variable without `__` (e.g. `INSPECTOR_CONFIG`) is not an override.
    """
    applied: dict[tuple[str, ...], str] = {}
    for name in sorted(env):
        if not name.startswith(ENV_PREFIX) or "__" not in name[len(ENV_PREFIX) :]:
            continue
        parts = [p for p in name[len(ENV_PREFIX) :].split("__")]
        if any(not p for p in parts):
            continue
        try:
            value = yaml.safe_load(env[name])
        except yaml.YAMLError:
            value = env[name]  # not YAML: take the text as it is
        node: dict[str, Any] = data
        path: list[str] = []
        for i, part in enumerate(parts):
            key = next((k for k in node if isinstance(k, str) and k.lower() == part.lower()), part.lower())
            path.append(key)
            if i == len(parts) - 1:
                node[key] = value
            else:
                child = node.get(key)
                if not isinstance(child, dict):
                    child = {}
                    node[key] = child
                node = child
        applied[tuple(path)] = name
    return applied


def validation_issues(
    exc: ValidationError, lines: dict[tuple[str, ...], int], env_paths: dict[tuple[str, ...], str]
) -> list[ConfigIssue]:
    """Pydantic's errors as ConfigIssues, each with the line of its deepest field present in the file."""
    env_prefixes: dict[tuple[str, ...], str] = {}
    for env_path, var in env_paths.items():  # an unknown section is reported at its first key: map prefixes too
        for depth in range(len(env_path), 0, -1):
            env_prefixes.setdefault(env_path[:depth], var)
    issues = []
    for err in exc.errors():
        loc = tuple(str(p) for p in err["loc"] if p != "[key]")
        message = err["msg"]
        if err["type"] == "extra_forbidden":
            message = "unknown field (not allowed here)"
        elif (
            "input" in err
            and err["type"] not in {"missing", "value_error"}
            and not isinstance(err["input"], dict | list)
        ):
            message = f"{message} (got {err['input']!r})"
        line = env = None
        for depth in range(len(loc), 0, -1):
            prefix = loc[:depth]
            if prefix in env_paths:  # the value came from the environment, even where the file has one too
                env = env_paths[prefix]
                break
            if prefix in lines:
                line = lines[prefix]
                break
            if prefix in env_prefixes:
                env = env_prefixes[prefix]
                break
        # A message may quote the value: a URI's password never goes into it.
        issues.append(ConfigIssue(".".join(loc), redact_text(message.removeprefix("Value error, ")), line, env))
    return issues


def load_config(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> LineConfig:
    """Read a line config: the YAML file at `path` (None: defaults only), then the environment overrides.

    env: the variables to read (default `os.environ`). Relative paths in the file are used as written (relative
    to the working directory). Raises `ConfigError` naming each bad field, with its YAML line or variable.
    """
    data: dict[str, Any] = {}
    lines: dict[tuple[str, ...], int] = {}
    source = "<defaults>"
    if path is not None:
        source = str(path)
        data, lines = read_yaml(Path(path))
    env_paths = _apply_env(data, os.environ if env is None else env)
    try:
        return LineConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(source, validation_issues(exc, lines, env_paths)) from None


def check_files(config: LineConfig) -> list[ConfigIssue]:
    """Problems pydantic cannot see: model files, reference images and image folders that do not exist."""
    issues = []
    model_sections = [("model", config.model)] + [
        (f"recipes.{name}.model", recipe.model) for name, recipe in config.recipes.items()
    ]
    models = [(f"{where}.path", m.path) for where, m in model_sections] + [
        (f"{where}.fallback", m.fallback) for where, m in model_sections if m.fallback is not None
    ]
    for field, model_path in models:
        if not Path(model_path).is_file():
            issues.append(ConfigIssue(field, f"model file not found: {model_path}"))
    references = [("reference", config.reference)] + [
        (f"recipes.{n}.reference", r.reference) for n, r in config.recipes.items()
    ]
    for where, reference in references:
        if reference.image is not None and not Path(reference.image).is_file():
            issues.append(ConfigIssue(f"{where}.image", f"reference image not found: {reference.image}"))
    cam = config.camera
    if cam.source == "folder" and not Path(cam.uri).is_dir():
        issues.append(ConfigIssue("camera.uri", f"image folder not found: {cam.uri}"))
    if cam.source == "opencv" and cam.uri.startswith("/dev/") and not Path(cam.uri).exists():
        issues.append(
            ConfigIssue(
                "camera.uri", f"camera device not found: {cam.uri} (the line retries until it appears)", warning=True
            )
        )
    return issues
