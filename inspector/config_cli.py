"""`inspector check-config FILE`: validate a line config and say what is wrong (field path and YAML line), then make
the checks `inspector run` makes before its first part (`inspector.preflight`): each recipe's model (and fallback)
loads, matches the config and passes its self-test; a folder source holds a readable image.

Nothing it prints shows a secret: URIs go through `inspector.redact`, passwords are left out."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from inspector.config import ConfigError, LineConfig, check_files, load_config
from inspector.redact import install_log_redaction, redact_obj, redact_text, redact_url

__all__ = ["main", "start_with_config"]


def start_with_config(path: str | Path | None, *, log_level: int | str, log_format: str) -> LineConfig | None:
    """How a command that reads a line config starts (`check-config`, `run`): logging, with credentials redacted
    in every record, then the config at `path`, or None after printing its problems (field and line, secrets
    redacted) to stderr."""
    logging.basicConfig(level=log_level, format=log_format)
    install_log_redaction()
    try:
        return load_config(path)
    except ConfigError as exc:
        print(redact_text(str(exc)), file=sys.stderr)
        return None


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="inspector check-config",
        description="Validate a line config (YAML plus INSPECTOR_<SECTION>__<KEY> environment overrides) and load "
        "its models and folder source as `inspector run` would. Exit status 0 when it is usable, 1 when not (each "
        "problem is printed with its field and line).",
    )
    parser.add_argument("file", help="the line's YAML config")
    parser.add_argument(
        "--no-files",
        action="store_true",
        help="do not check model files and folders (existence, loading, self-test): for a config written elsewhere",
    )
    parser.add_argument("--print", action="store_true", help="print the resolved config (defaults filled in)")
    args = parser.parse_args(argv)
    log_format = "inspector check-config: %(levelname)s %(message)s"
    config = start_with_config(args.file, log_level=logging.WARNING, log_format=log_format)
    if config is None:
        return 1
    issues = []
    if not args.no_files:
        from inspector.preflight import check_models, check_source

        issues = check_files(config)
        issues += check_models(config)
        if not any(issue.path == "camera.uri" for issue in issues):
            issues += check_source(config.camera)
    for warning in (issue for issue in issues if issue.warning):
        print(f"{args.file}: warning: {redact_text(str(warning))}", file=sys.stderr)
    issues = [issue for issue in issues if not issue.warning]
    if issues:
        print(f"{args.file}: {len(issues)} problem{'s' if len(issues) != 1 else ''}", file=sys.stderr)
        for issue in issues:
            print(f"  {redact_text(str(issue))}", file=sys.stderr)
        return 1
    if args.print:
        resolved = config.model_dump(mode="json", exclude={"mqtt": {"password"}})
        print(json.dumps(redact_obj(resolved), indent=2))
    cam, pipe = config.camera, config.pipeline
    recipes = ", ".join(["default", *config.recipes])
    print(
        f"{args.file}: OK (camera {cam.id}: {cam.source} {redact_url(cam.uri)}; model {config.model.path}; "
        f"mode {pipe.mode}; trigger {config.trigger.mode}; gate {pipe.gate_ms} ms; recipes {recipes})"
    )
    return 0
