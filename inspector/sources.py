"""Frame sources behind one protocol (`inspector.types.FrameSource`): OpenCV, image folder, in-memory, synthetic.

Every source returns `(image, truth)` from `read()`: image (H, W, 3) uint8 BGR. A finite stream ends with None;
a lost camera raises `SourceError` and the pipeline's capture thread reopens it with `Backoff`. Pacing is one
schedule, `Pacer`: the `Paced` wrapper paces any source with it (a camera or folder at `fps`, the synthetic line
at its part rate), and a video file played in real time keeps its own fps with it.
Free-run cameras (RTSP, HTTP, USB, a file played in real time, a free-running GenICam camera) are read through
`inspector.grabber.Grabber`: newest frame only, a stall is a lost camera. A source that knows when a frame was
captured says so in `last_capture_ns` (monotonic ns) after each `read()`. GenICam cameras: `inspector.genicam`.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from inspector.config import CameraConfig
from inspector.grabber import Grabber, StreamClock
from inspector.imageops import as_bgr
from inspector.redact import redact_text, redact_url
from inspector.types import FrameSource, SourceError

__all__ = [
    "IMAGE_SUFFIXES",
    "TRUTH_MANIFEST",
    "Backoff",
    "FolderSource",
    "ImageTruth",
    "MemorySource",
    "OpenCvSource",
    "Paced",
    "Pacer",
    "as_bgr",
    "load_frames",
    "open_source",
    "software_trigger",
]

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"})


class Backoff:
    """Exponential back-off for reopening a camera: initial, 2x initial, ... capped at `maximum` (seconds)."""

    def __init__(self, initial: float, maximum: float) -> None:
        self.initial = initial
        self.maximum = max(maximum, initial)
        self._next = initial

    def next_delay(self) -> float:
        """The wait before the next attempt, in seconds; each call doubles the following one."""
        delay = self._next
        self._next = min(self._next * 2, self.maximum)
        return delay

    def reset(self) -> None:
        self._next = self.initial


class Pacer:
    """A fixed-rate schedule, the one every paced source keeps: `wait()` returns when the next slot is due.

    The schedule is absolute (slot k is due at start + k / fps), so sleep jitter does not add up; a caller that
    falls more than one period behind restarts the schedule instead of bursting to catch up (a camera would have
    skipped those frames too). The first slot is the first `wait()` after `restart()`, or `restart(now=True)`'s time.
    """

    def __init__(self, fps: float) -> None:
        if fps <= 0:
            raise ValueError("fps must be > 0")
        self.period_ns = int(1e9 / fps)
        self._due = 0

    def restart(self, now: bool = False) -> None:
        """Begin a new schedule: its first slot is now (`now=True`), or else the next `wait()`."""
        self._due = time.monotonic_ns() if now else 0

    def wait(self) -> None:
        """Sleep until the current slot is due (not at all when it is past), then move on to the next slot."""
        now = time.monotonic_ns()
        if self._due == 0 or now - self._due > self.period_ns:
            self._due = now
        elif self._due > now:
            time.sleep((self._due - now) / 1e9)
        self._due += self.period_ns


class Paced:
    """Wraps a source so that `read()` returns at most `fps` frames a second, on a fixed schedule (`Pacer`).

    read_first: False (cameras, folders): wait for the slot, then read, so a camera's frame is fresh when it is
        returned. True (the synthetic line, a generator or decoder): read first, then wait for the slot, so the
        frame appears on time rather than one read late; the schedule then starts at `open()`.
    """

    def __init__(self, source: FrameSource, fps: float, *, read_first: bool = False) -> None:
        self.pacer = Pacer(fps)
        self.source = source
        self.read_first = read_first
        self.live = True  # frames come on their own schedule: a surplus must fail safe, not wait
        self.description = f"{source.description} at {fps:g} fps"

    @property
    def last_capture_ns(self) -> int | None:
        return getattr(self.source, "last_capture_ns", None)

    def stats(self) -> dict[str, int]:
        inner = getattr(self.source, "stats", None)
        return inner() if callable(inner) else {}

    def open(self) -> None:
        self.source.open()
        self.pacer.restart(now=self.read_first)

    def read(self) -> tuple[np.ndarray, Any] | None:
        if not self.read_first:
            self.pacer.wait()
            return self.source.read()
        item = self.source.read()
        if item is not None:
            self.pacer.wait()
        return item

    def close(self) -> None:
        self.source.close()


class MemorySource:
    """Pre-decoded images served from memory, cycled (as from a camera), for benchmarks and tests.

    images: (H, W, 3) uint8 BGR arrays, returned as they are (no copy: the pipeline never writes into frames).
    count: frames to serve in all before the stream ends (None: forever). truths: one per image, or None.
    """

    def __init__(
        self,
        images: Sequence[np.ndarray],
        count: int | None = None,
        truths: Sequence[Any] | None = None,
        description: str = "memory",
    ) -> None:
        if not images:
            raise ValueError("MemorySource needs at least one image")
        if truths is not None and len(truths) != len(images):
            raise ValueError("truths must match images one to one")
        self.images = [as_bgr(np.asarray(img)) for img in images]
        self.truths = list(truths) if truths is not None else None
        self.count = count
        self.live = False  # reading waits for the pipeline: nothing is lost by waiting
        self.description = f"{description} ({len(self.images)} images)"
        self.served = 0

    def open(self) -> None:
        pass  # memory never disconnects; `served` carries on across reopen

    def read(self) -> tuple[np.ndarray, Any] | None:
        if self.count is not None and self.served >= self.count:
            return None
        i = self.served % len(self.images)
        self.served += 1
        return self.images[i], (self.truths[i] if self.truths is not None else None)

    def close(self) -> None:
        pass


TRUTH_MANIFEST = "truth.json"
# Folder names that label the images in them (case-insensitive): good / OK parts, bad / NG (no good) parts.
_LABEL_DIRS = {"good": False, "ok": False, "bad": True, "ng": True}


@dataclass(frozen=True, slots=True)
class ImageTruth:
    """Ground truth of one image of a labelled folder, as `Verdict.truth` carries it (the verdict record and
    `inspector.truth.GroundTruth` read `defective`, like the synthetic line's `PartTruth`).

    file: the image's path relative to where the truth came from (the manifest's folder, or the source folder).
    defects: the manifest's defect records (`{class_name, xyxy, ...}`) where it lists them, else empty.
    origin: "manifest" (a `truth.json`) or "folder" (a `good/` / `bad/` parent folder name).
    """

    defective: bool
    file: str
    defects: tuple[dict[str, Any], ...] = ()
    origin: str = "manifest"


def _manifest_entries(path: Path) -> list[dict[str, Any]]:
    """The part records of a truth manifest: `{"parts": [...]}` (`inspector.sim.write_folder`) or a bare list;
    each record has `file` (relative to the manifest) and `defective` (or a `defects` list)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SourceError(f"{path}: unreadable truth manifest: {exc}") from exc
    parts = data.get("parts") if isinstance(data, dict) else data
    if not isinstance(parts, list) or not all(isinstance(p, dict) and isinstance(p.get("file"), str) for p in parts):
        raise SourceError(f"{path}: a truth manifest needs a list of parts, each with a 'file'")
    for part in parts:
        if not isinstance(part.get("defective", part.get("defects")), bool | int | list):
            raise SourceError(f"{path}: part {part['file']!r} says neither 'defective' (true/false) nor 'defects'")
    return parts


def _entry_truth(entry: dict[str, Any]) -> ImageTruth:
    defects = entry.get("defects")
    flag = entry.get("defective")
    defective = bool(flag) if isinstance(flag, bool | int) else bool(defects)
    return ImageTruth(defective, entry["file"], tuple(defects or ()), "manifest")


class FolderSource:
    """The images of a folder (one part each), optionally looping, with their ground truth where it is known.

    Which images, in which order:
    - a `truth.json` manifest in the folder (`inspector.sim.write_folder` writes one): its parts' files, in the
      manifest's order (they may lie in subfolders such as `good/` and `bad/`);
    - otherwise the images in the folder and in its subfolders named `good`, `ok`, `bad` or `ng`
      (case-insensitive), sorted by file name (then path): a labelled folder replays as one mixed conveyor.
    Truth (`read()`'s second item, an `ImageTruth`, or None where unknown; `truth=False` turns it off): the
    image's record in a manifest in the folder, or beside it (`<folder>/../truth.json`, e.g. for `uri: out/bad`);
    else its parent folder's name: `good` / `ok` = not defective, `bad` / `ng` = defective.
    An image that cannot be decoded is skipped with a warning and counted in `skipped`.
    """

    def __init__(self, folder: str | Path, loop: bool = False, truth: bool = True) -> None:
        self.folder = Path(folder)
        self.loop = loop
        self.truth = truth
        self.live = False
        self.description = f"folder {self.folder}"
        self.paths: list[Path] = []
        self.truths: list[ImageTruth | None] = []
        self.skipped = 0
        self._index = 0

    def open(self) -> None:
        if not self.folder.is_dir():
            raise SourceError(f"image folder not found: {self.folder}")
        inside = self.folder / TRUTH_MANIFEST
        if inside.is_file():
            entries = _manifest_entries(inside)
            self.paths = [self.folder / e["file"] for e in entries]
            missing = [str(p) for p in self.paths if not p.is_file()]
            if missing:
                raise SourceError(f"{inside} lists {len(missing)} missing image(s), e.g. {missing[0]}")
            self.truths = [_entry_truth(e) if self.truth else None for e in entries]
        else:
            dirs = [self.folder] + [d for d in self.folder.iterdir() if d.is_dir() and d.name.lower() in _LABEL_DIRS]
            found = [p for d in dirs for p in d.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()]
            self.paths = sorted(found, key=lambda p: (p.name, str(p)))
            self.truths = self._lookup_truths() if self.truth else [None] * len(self.paths)
        if not self.paths:
            raise SourceError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in {self.folder}")

    def _lookup_truths(self) -> list[ImageTruth | None]:
        """Truth of each of `paths` from a manifest beside the folder, else from its parent folder's name."""
        by_path: dict[Path, ImageTruth] = {}
        beside = self.folder.parent / TRUTH_MANIFEST
        if beside.is_file():
            for entry in _manifest_entries(beside):
                by_path[(beside.parent / entry["file"]).resolve()] = _entry_truth(entry)
        truths: list[ImageTruth | None] = []
        for path in self.paths:
            known = by_path.get(path.resolve())
            label = _LABEL_DIRS.get(path.parent.name.lower())
            if known is None and label is not None:
                known = ImageTruth(label, str(path.relative_to(self.folder.parent)), (), "folder")
            truths.append(known)
        return truths

    def read(self) -> tuple[np.ndarray, Any] | None:
        failures = 0
        while True:
            if self._index >= len(self.paths):
                if not self.loop:
                    return None
                self._index = 0
            i = self._index
            self._index += 1
            image = cv2.imread(str(self.paths[i]), cv2.IMREAD_COLOR)
            if image is not None:
                return image, self.truths[i]
            self.skipped += 1
            failures += 1
            log.warning("skipping %s: not a readable image", self.paths[i])
            if failures >= len(self.paths):  # a whole round unreadable: looping would spin forever
                raise SourceError(f"no readable image in {self.folder}")

    def close(self) -> None:
        pass


def is_device_path(uri: str) -> bool:
    """True for a V4L2 device name: `/dev/video0`, `/dev/v4l/by-id/...`, `/dev/v4l/by-path/...`."""
    return uri.startswith("/dev/")


class OpenCvSource:
    """OpenCV `VideoCapture`: a USB camera (index "0", a `/dev/video0` path or a stable `/dev/v4l/by-id/...` or
    `by-path/...` name), an RTSP/HTTP URL, or a video file.

    Cameras and streams are live: a failed read means the camera is lost (`SourceError`; the pipeline reopens it),
    including a stream that ends; a USB device that is not there (unplugged) is a lost camera too, retried, never
    taken for a missing file. A video file is finite: it ends with None, or starts again with `loop`;
    `realtime` paces a file at its own frame rate (otherwise it is read as fast as it decodes).
    `last_capture_ns`: the last frame's capture time from the stream's timestamps where the backend gives them
    (`StreamClock`; V4L2 buffer times are the kernel's monotonic clock already), else its read time.
    """

    def __init__(
        self,
        uri: str,
        *,
        loop: bool = False,
        realtime: bool = False,
        open_timeout_s: float = 5.0,
        read_timeout_s: float = 5.0,
    ) -> None:
        self.uri = uri
        self.loop = loop
        self.realtime = realtime
        self.open_timeout_ms = int(open_timeout_s * 1000)
        self.read_timeout_ms = int(read_timeout_s * 1000)
        if uri.strip().isdigit() or is_device_path(uri):
            self.kind = "usb"
        elif "://" in uri:
            self.kind = "stream"
        else:
            self.kind = "file"
        self.description = f"opencv {self.kind} {redact_url(uri)}"  # shown in stats, alarms, logs and MQTT
        self.live = self.kind != "file" or realtime  # a camera (or a file played in real time) does not wait
        self.last_capture_ns: int | None = None
        self._clock = StreamClock()
        self._cap: cv2.VideoCapture | None = None
        self._pacer: Pacer | None = None  # a file played in real time, at the file's own frame rate

    def _target(self) -> tuple[int | str, int]:
        """What to hand VideoCapture, and the backend: a device path is resolved (by-id names are symlinks)."""
        if self.kind != "usb":
            return self.uri, cv2.CAP_ANY
        if self.uri.strip().isdigit():
            return int(self.uri), cv2.CAP_ANY
        if not os.path.exists(self.uri):
            raise SourceError(f"camera device not found: {self.uri} (unplugged? check `ls -l /dev/v4l/by-id/`)")
        return os.path.realpath(self.uri), cv2.CAP_V4L2

    def open(self) -> None:
        self.close()
        if self.kind == "file" and not Path(self.uri).is_file():
            raise SourceError(f"video file not found: {self.uri}")
        target, backend = self._target()
        params = [
            cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
            self.open_timeout_ms,
            cv2.CAP_PROP_READ_TIMEOUT_MSEC,
            self.read_timeout_ms,
        ]
        try:
            cap = cv2.VideoCapture(target, backend, params)
        except cv2.error as exc:  # some backends raise instead of returning a closed capture
            raise SourceError(f"cannot open {self.description}: {redact_text(str(exc))}") from exc
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"cannot open {self.description}")
        self._cap = cap
        self._clock.reset()
        fps = cap.get(cv2.CAP_PROP_FPS)
        self._pacer = Pacer(fps) if self.realtime and self.kind == "file" and fps > 0 else None

    def read(self) -> tuple[np.ndarray, Any] | None:
        if self._cap is None:
            raise SourceError(f"{self.description} is not open")
        ok, image = self._cap.read()
        if not ok and self.kind == "file" and self.loop:
            self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, image = self._cap.read()
        if not ok or image is None:
            if self.kind == "file":
                return None
            raise SourceError(f"lost {self.description}: no frame")
        if self._pacer is not None:
            self._pacer.wait()
        self.last_capture_ns = self._capture_ns(time.monotonic_ns())
        return as_bgr(image), None

    @property
    def settled(self) -> bool:
        """False while a stream is still handing over the frames it buffered on connecting (`StreamClock`)."""
        return self.kind != "stream" or self._clock.settled

    def _capture_ns(self, arrival_ns: int) -> int:
        stream_ms = self._cap.get(cv2.CAP_PROP_POS_MSEC) if self._cap is not None else -1.0
        if self.kind == "usb" and stream_ms > 0 and abs(stream_ms * 1e6 - arrival_ns) < 5e9:
            return min(int(stream_ms * 1e6), arrival_ns)  # a V4L2 buffer time: the monotonic clock already
        if self.kind == "file" and not self.realtime:
            return arrival_ns  # decoded as fast as it goes: its timestamps are not a clock
        return self._clock.capture_ns(stream_ms if stream_ms >= 0 else None, arrival_ns)

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


def software_trigger(source: FrameSource) -> Callable[[], None] | None:
    """The `trigger()` of a camera that takes a frame on command (GenICam software trigger), looking through
    wrappers (`Paced`); None for any other source."""
    inner: Any = source
    while inner is not None:
        fire = getattr(inner, "trigger", None)
        if callable(fire):
            return fire  # type: ignore[no-any-return]
        inner = getattr(inner, "source", None)
    return None


def open_source(camera: CameraConfig) -> FrameSource:
    """The source a camera config names (not yet opened: the pipeline opens it, and reopens it when lost)."""
    source: FrameSource
    if camera.source == "synthetic":
        from inspector.sim import SyntheticSource  # lazy: the simulator is not needed on a real line

        synthetic = SyntheticSource(camera.synthetic)
        return Paced(synthetic, camera.fps, read_first=True) if camera.fps else synthetic
    if camera.source == "folder":
        source = FolderSource(camera.uri, loop=camera.loop)
    elif camera.source == "genicam":
        from inspector.genicam import open_genicam  # lazy: Aravis (PyGObject) only where a GenICam camera is used

        source = open_genicam(camera)
    else:

        def make() -> OpenCvSource:
            return OpenCvSource(
                camera.uri,
                loop=camera.loop,
                realtime=camera.realtime,
                open_timeout_s=camera.open_timeout_s,
                read_timeout_s=camera.read_timeout_s,
            )

        source = make()
        if source.live:  # a camera: newest frame only, a stall is a loss
            source = Grabber(make, stall_timeout_s=camera.stall_timeout_s, name=camera.id)
    return Paced(source, camera.fps) if camera.fps else source


def load_frames(path: str | Path, limit: int | None = None) -> list[np.ndarray]:
    """Decode a folder of images (sorted) or a video file into memory: a list of (H, W, 3) uint8 BGR arrays.

    limit: stop after this many frames. Raises `SourceError` when nothing can be read.
    """
    path = Path(path)
    source: FrameSource = FolderSource(path) if path.is_dir() else OpenCvSource(str(path))
    frames: list[np.ndarray] = []
    source.open()
    try:
        while limit is None or len(frames) < limit:
            item = source.read()
            if item is None:
                break
            frames.append(item[0])
    finally:
        source.close()
    if not frames:
        raise SourceError(f"no frames in {path}")
    return frames
