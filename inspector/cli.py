"""The `inspector` command. Each sub-command lives in the module that owns it and exposes `main(argv) -> int`.

Sub-command modules are imported only when their command runs, so `inspector detect` never pays for (or needs)
the training stack, and the edge process never imports torch or ultralytics.
"""

from __future__ import annotations

import importlib
import sys

__all__ = ["COMMANDS", "main"]

# name -> (module with `main(argv: list[str]) -> int`, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("inspector.demo", "run the synthetic line, model, broker, PLC simulator and dashboard"),
    "run": ("inspector.line_cli", "run one inspection line from a config file until Ctrl-C / SIGTERM"),
    "detect": ("inspector.detect_cli", "run the detector on images or folders and print the boxes"),
    "bench": ("inspector.bench_cli", "measure the pipeline's throughput and latency on a folder or video"),
    "check-config": ("inspector.config_cli", "validate a line config file and say what is wrong"),
    "recipe": ("inspector.recipes", "recipe packages: `recipe check DIR` validates one, `recipe list`"),
    "probe-camera": ("inspector.probe_cli", "check a camera: resolution, measured fps and frame age"),
    "dataset": ("inspector.dataset", "dataset tools: import-deeppcb SRC OUT"),
    "train": ("inspector.train", "train a detector from a model yaml (needs the 'train' extra)"),
    "export": (
        "inspector.export",
        "export a checkpoint to ONNX (fp32, fp16, int8) with Ultralytics' metadata",
    ),
    "check-model": (
        "inspector.selftest",
        "self-test a model file on this host against its recorded source outputs or another file",
    ),
    "eval": ("inspector.evaluate", "evaluate an ONNX model with our runtime: mAP, DeepPCB F-score, escapes"),
    "calibrate": (
        "inspector.calibrate",
        "pick per-class thresholds for a target escape or false-reject rate",
    ),
    "sim": (
        "inspector.sim.cli",
        "synthetic parts (PCB; `sim mooncake`: mooncakes): write a YOLO dataset or a labelled folder, time it",
    ),
    "plc-sim": ("inspector.sim.plc_cli", "a PLC stand-in: conveyor, triggers, reject gate, report"),
    "fleet": ("inspector.fleet.cli", "the plant view: every line on one broker, totals per recipe and shift"),
    "hash-password": ("inspector.auth", "hash a dashboard password for the config's users section"),
}


def _usage() -> str:
    width = max(len(n) for n in COMMANDS)
    lines = ["usage: inspector COMMAND [ARGS...]", "", "commands:"]
    lines += [f"  {name.ljust(width)}  {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "Run `inspector COMMAND --help` for a command's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in {"-h", "--help", "help"}:
        print(_usage())
        return 0
    if args[0] == "--version":
        from importlib.metadata import version

        print(f"inspector {version('inspector')}")
        return 0
    name, rest = args[0], args[1:]
    if name not in COMMANDS:
        print(f"inspector: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    from inspector.redact import install_log_redaction

    install_log_redaction()  # no command logs a URI's password, whatever logger says it
    module = importlib.import_module(COMMANDS[name][0])
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
