"""Ultralytics glue for training (extra `train`). Ultralytics and torch are imported inside functions only.

Training starts from a model yaml (the architecture) with random weights, or with weights from an earlier run of
ours (`init_weights`: a local file, e.g. the 320 model's final weights to fine-tune at a larger input size), so that
nothing is downloaded; `YOLO_OFFLINE=1` is set before Ultralytics is imported for the same reason.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

__all__ = ["import_ultralytics", "main", "train"]


def import_ultralytics() -> Any:
    """Import Ultralytics offline, or explain how to install it."""
    os.environ.setdefault("YOLO_OFFLINE", "1")
    try:
        import ultralytics
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise SystemExit("inspector: this command needs the training extra: pip install 'inspector[train]'") from exc
    return ultralytics


def train(
    data: Path,
    model: str = "yolov8n.yaml",
    imgsz: int = 320,
    epochs: int = 60,
    batch: int = 16,
    project: Path = Path("runs"),
    name: str = "train",
    resume: Path | None = None,
    checkpoint_copy: Path | None = None,
    workers: int = 2,
    device: str = "cpu",
    extra: dict[str, Any] | None = None,
    init_weights: Path | None = None,
) -> Path:
    """Train (or resume) and return the path of the best weights.

    checkpoint_copy: after every epoch the latest `last.pt` is copied there (replaced, not accumulated), so a
    session that is stopped can resume from a committed file.
    init_weights: start from the weights of this local .pt (layers whose shapes match `model` are taken over)
    instead of random ones.
    """
    ultralytics = import_ultralytics()
    if resume is not None:
        yolo = ultralytics.YOLO(str(resume))
        overrides: dict[str, Any] = {"resume": True}
        # A checkpoint committed elsewhere must still find its dataset and run folder.
        overrides.update({"data": str(data)} if data else {})
    else:
        if not str(model).endswith((".yaml", ".yml")):
            raise ValueError(f"model must be a yaml (architecture), not weights: {model}")
        if init_weights is not None and not Path(init_weights).is_file():
            raise FileNotFoundError(f"--init-weights: no such file: {init_weights}")
        yolo = ultralytics.YOLO(model)
        overrides = {
            "data": str(data),
            "imgsz": imgsz,
            "epochs": epochs,
            "batch": batch,
            "project": str(Path(project).resolve()),
            "name": name,
            "exist_ok": True,
            "workers": workers,
            "device": device,
            "pretrained": str(init_weights) if init_weights is not None else False,
            "plots": False,  # plotting fetches a font from the internet
            "amp": False,  # the AMP check downloads a model
            "flipud": 0.5,  # a PCB has no up or down
            "cache": "ram",
            "seed": 0,
            "deterministic": False,
            **(extra or {}),
        }
    if checkpoint_copy is not None:
        checkpoint_copy.parent.mkdir(parents=True, exist_ok=True)

        def copy_last(trainer: Any) -> None:
            last = Path(trainer.last)
            if last.exists():
                tmp = checkpoint_copy.with_suffix(".tmp")
                shutil.copyfile(last, tmp)
                tmp.replace(checkpoint_copy)
            log = checkpoint_copy.with_name("progress.jsonl")
            with log.open("a") as fh:
                row = {"epoch": trainer.epoch + 1, "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
                row.update({k: round(float(v), 5) for k, v in (trainer.metrics or {}).items()})
                fh.write(json.dumps(row) + "\n")

        yolo.add_callback("on_fit_epoch_end", copy_last)
    yolo.train(**overrides)
    return Path(yolo.trainer.best)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="inspector train", description="Train a detector from a model yaml.")
    parser.add_argument("--data", type=Path, required=True, help="Ultralytics dataset yaml")
    parser.add_argument("--model", default="yolov8n.yaml", help="model yaml, e.g. yolov8n.yaml, yolo11n.yaml")
    parser.add_argument("--imgsz", type=int, default=320)
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="cpu, 0, 0,1 ...")
    parser.add_argument("--project", type=Path, default=Path("runs"))
    parser.add_argument("--name", default="train")
    parser.add_argument("--resume", type=Path, help="resume from this last.pt")
    parser.add_argument("--checkpoint-copy", type=Path, help="copy last.pt here after every epoch")
    parser.add_argument(
        "--init-weights", type=Path, help="start from this local .pt of an earlier run (to fine-tune at a new size)"
    )
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="extra train argument")
    args = parser.parse_args(argv)
    extra: dict[str, Any] = {}
    for item in args.set:
        key, _, value = item.partition("=")
        try:
            extra[key] = json.loads(value)
        except json.JSONDecodeError:
            extra[key] = value
    try:
        best = train(
            args.data,
            args.model,
            args.imgsz,
            args.epochs,
            args.batch,
            args.project,
            args.name,
            args.resume,
            args.checkpoint_copy,
            args.workers,
            args.device,
            extra,
            args.init_weights,
        )
    except (FileNotFoundError, ValueError) as exc:
        print(f"inspector train: {exc}", file=sys.stderr)
        return 1
    print(json.dumps({"best": str(best)}))
    return 0
