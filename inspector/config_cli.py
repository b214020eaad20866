"""`inspector check-config FILE`: validate a line config and say what is wrong (field path and YAML line)."""

from __future__ import annotations

import argparse
import sys

from inspector.config import ConfigError, check_files, load_config

__all__ = ["main"]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="inspector check-config",
        description="Validate a line config (YAML plus INSPECTOR_<SECTION>__<KEY> environment overrides). "
        "Exit status 0 when it is usable, 1 when not (each problem is printed with its field and line).",
    )
    parser.add_argument("file", help="the line's YAML config")
    parser.add_argument("--no-files", action="store_true", help="do not check that model files and folders exist")
    parser.add_argument("--print", action="store_true", help="print the resolved config (defaults filled in)")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.file)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 1
    issues = [] if args.no_files else check_files(config)
    if issues:
        print(f"{args.file}: {len(issues)} problem{'s' if len(issues) != 1 else ''}", file=sys.stderr)
        for issue in issues:
            print(f"  {issue}", file=sys.stderr)
        return 1
    if args.print:
        print(config.model_dump_json(indent=2, exclude={"mqtt": {"password"}}))
    cam, pipe = config.camera, config.pipeline
    recipes = ", ".join(["default", *config.recipes])
    print(
        f"{args.file}: OK (camera {cam.id}: {cam.source} {cam.uri}; model {config.model.path}; "
        f"mode {pipe.mode}; trigger {config.trigger.mode}; gate {pipe.gate_ms} ms; recipes {recipes})"
    )
    return 0
