"""The self-test record beside a model (`<stem>.selftest.json`): small reference images, embedded as PNG, and the
fp32 source's detections on them; written at export, read at every load."""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from inspector.detector import ModelError, OnnxDetector
from inspector.selftest.compare import TOLERANCES
from inspector.selftest.host import host_summary
from inspector.types import Detections

__all__ = ["SCHEMA", "SIDECAR_SUFFIX", "RecordedImage", "SelfTestRecord", "record", "reference_images", "sidecar_path"]

SCHEMA = 1
SIDECAR_SUFFIX = ".selftest.json"


def sidecar_path(model: Path) -> Path:
    """`models/x-int8.onnx` -> `models/x-int8.selftest.json`."""
    model = Path(model)
    return model.with_name(model.stem + SIDECAR_SUFFIX)


@dataclass(slots=True)
class RecordedImage:
    """One reference image (PNG bytes, decoded on demand) and the source's detections on it."""

    name: str
    png: bytes
    detections: Detections

    def image(self) -> np.ndarray:
        """(H, W, 3) uint8 BGR."""
        image = cv2.imdecode(np.frombuffer(self.png, np.uint8), cv2.IMREAD_COLOR)
        if image is None:
            raise ValueError(f"self-test image {self.name}: not a decodable PNG")
        return image


@dataclass(slots=True)
class SelfTestRecord:
    """The source model's detections on the reference images, and where they were recorded.

    source: {"file", "sha256", "precision"} of the model that made the detections (the fp32 file).
    conf: the operating confidence the record is meant for; floor: the confidence down to which boxes were kept.
    host: `host_summary` of the recording machine; created: ISO time.
    """

    source: dict[str, str]
    conf: float
    floor: float
    images: list[RecordedImage]
    names: dict[int, str]
    host: dict[str, Any] = field(default_factory=dict)
    created: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "source": self.source,
            "conf": self.conf,
            "floor": self.floor,
            "names": {str(k): v for k, v in self.names.items()},
            "host": self.host,
            "created": self.created,
            "images": [
                {
                    "name": im.name,
                    "png_base64": base64.b64encode(im.png).decode("ascii"),
                    "detections": im.detections.to_list(self.names),
                }
                for im in self.images
            ],
        }

    def save(self, path: Path) -> Path:
        Path(path).write_text(json.dumps(self.to_json(), indent=1) + "\n")
        return Path(path)

    @classmethod
    def load(cls, path: Path) -> SelfTestRecord:
        """Read a record; raises `ModelError` naming the file and what is wrong with it."""
        try:
            raw = json.loads(Path(path).read_text())
            if raw.get("schema") != SCHEMA:
                raise ValueError(f"schema {raw.get('schema')!r}, this inspector reads {SCHEMA}")
            images = [
                RecordedImage(im["name"], base64.b64decode(im["png_base64"]), Detections.from_list(im["detections"]))
                for im in raw["images"]
            ]
            return cls(
                source=dict(raw["source"]),
                conf=float(raw["conf"]),
                floor=float(raw["floor"]),
                images=images,
                names={int(k): str(v) for k, v in raw["names"].items()},
                host=dict(raw.get("host", {})),
                created=str(raw.get("created", "")),
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ModelError(f"{path}: not a usable self-test record ({type(exc).__name__}: {exc})") from exc


def reference_images(count: int = 8, seed: int = 20261201) -> list[tuple[str, np.ndarray]]:
    """`count` small reference images from the synthetic PCB line: every other part defective, so the record
    holds boxes of several classes and clean board around them. Deterministic by seed."""
    from inspector.sim import SyntheticLine  # drawing code: only needed when recording

    out = []
    for k in range(count):
        line = SyntheticLine(seed=seed, defect_rate=1.0 if k % 2 == 0 else 0.0, size=640)
        out.append((f"synthetic-{seed}-{k}.png", line.make_part(k).image))
    return out


def record(
    detector: OnnxDetector,
    images: Sequence[tuple[str, np.ndarray]],
    conf: float = 0.25,
    margin: float | None = None,
) -> SelfTestRecord:
    """Run `detector` (the fp32 source) on `images` ((name, BGR uint8) pairs) and record its boxes down to
    `conf - margin` (margin: the loosest tolerance, int8's, so that any variant can be checked against it)."""
    margin = max(t.confidence for t in TOLERANCES.values()) if margin is None else margin
    floor = max(0.001, conf - margin)
    recorded = []
    for name, image in images:
        ok, png = cv2.imencode(".png", image)
        if not ok:
            raise ValueError(f"{name}: cannot encode as PNG")
        decoded = cv2.imdecode(png, cv2.IMREAD_COLOR)  # record what the check will see, byte for byte
        (dets,) = detector.detect([decoded], conf=floor)
        recorded.append(RecordedImage(name, png.tobytes(), dets))
    return SelfTestRecord(
        source={"file": detector.path.name, "sha256": detector.sha256, "precision": detector.precision},
        conf=conf,
        floor=floor,
        images=recorded,
        names=dict(detector.names),
        host=host_summary(detector.providers),
        created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    )
