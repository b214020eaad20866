"""`inspector probe-camera URI`: check a camera before wiring it to a line: resolution, measured fps, frame age.

It opens the source the way a line would (`inspector.sources.open_source`: a live camera through the grabber,
newest frame only), reads it for `--seconds`, and prints what it saw. Exit status 0 when frames came, 1 when the
camera could not be opened or sent nothing (the error names the device).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import numpy as np

from inspector.config import CameraConfig
from inspector.sources import open_source
from inspector.types import FrameSource, SourceError

__all__ = ["main", "probe"]


def probe(source: FrameSource, seconds: float, warmup: float = 1.0) -> dict[str, Any]:
    """Open `source`, read it for `seconds` (after the first frame and `warmup` more seconds, in which a stream
    delivers what it buffered while connecting), close it; what was measured, as a dict:
    open_s, first_frame_s, width, height, channels, frames (read), fps (frames the camera delivered per second:
    the grabber's count where there is one), frames_skipped, frame_age_ms {p50, p99, max} (read time minus the
    frame's capture time)."""
    t0 = time.monotonic()
    source.open()
    try:
        opened = time.monotonic()
        item = source.read()
        if item is None:
            raise SourceError(f"{source.description}: no frame (the stream ended at once)")
        first = time.monotonic()
        image = item[0]
        while time.monotonic() - first < warmup and source.read() is not None:
            pass
        start = time.monotonic()
        delivered0 = _delivered(source)
        ages: list[float] = []
        frames = 0
        while time.monotonic() - start < seconds:
            item = source.read()
            if item is None:
                break
            now = time.monotonic_ns()
            frames += 1
            captured = getattr(source, "last_capture_ns", None)
            if isinstance(captured, int):
                ages.append((now - captured) / 1e6)
        span = max(time.monotonic() - start, 1e-9)
        delivered = _delivered(source)
        counted = delivered - delivered0 if delivered is not None and delivered0 is not None else frames
        stats = getattr(source, "stats", None)
        skipped = int(stats().get("frames_skipped", 0)) if callable(stats) else 0
    finally:
        source.close()
    age = np.asarray(ages or [0.0])
    return {
        "source": source.description,
        "open_s": round(opened - t0, 3),
        "first_frame_s": round(first - t0, 3),
        "width": int(image.shape[1]),
        "height": int(image.shape[0]),
        "channels": int(image.shape[2]) if image.ndim == 3 else 1,
        "frames": frames,
        "seconds": round(span, 3),
        "fps": round(counted / span, 2),
        "frames_skipped": skipped,
        "frame_age_ms": {
            "p50": round(float(np.percentile(age, 50)), 1),
            "p99": round(float(np.percentile(age, 99)), 1),
            "max": round(float(age.max()), 1),
        },
    }


def _delivered(source: FrameSource) -> int | None:
    stats = getattr(source, "stats", None)
    return int(stats()["frames_grabbed"]) if callable(stats) and "frames_grabbed" in stats() else None


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="inspector probe-camera",
        description="Open a camera as a line would, read it for a few seconds and print its resolution, the frame "
        "rate it delivers and the age of its frames. URI: a USB index (0), a device path (/dev/video0, "
        "/dev/v4l/by-id/...), an RTSP/HTTP URL or a video file; with --source genicam a GenICam camera's id, "
        "serial number or IP address ('' for the first one found).",
    )
    parser.add_argument("uri", help="the camera (as camera.uri in a line config)")
    parser.add_argument("--source", choices=("opencv", "genicam"), default="opencv", help="camera.source")
    parser.add_argument("--seconds", type=float, default=5.0, help="how long to measure (default 5)")
    parser.add_argument("--warmup", type=float, default=1.0, help="read this long before measuring (default 1)")
    parser.add_argument("--realtime", action="store_true", help="a video file: play it at its own frame rate")
    parser.add_argument("--open-timeout", type=float, default=5.0, help="camera.open_timeout_s (default 5)")
    parser.add_argument("--stall-timeout", type=float, default=2.0, help="camera.stall_timeout_s (default 2)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    args = parser.parse_args(argv)
    try:
        camera = CameraConfig(
            source=args.source,
            uri=args.uri,
            realtime=args.realtime,
            open_timeout_s=args.open_timeout,
            stall_timeout_s=args.stall_timeout,
        )
        result = probe(open_source(camera), args.seconds, args.warmup)
    except SourceError as exc:
        print(f"inspector probe-camera: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(result))
        return 0
    age = result["frame_age_ms"]
    print(f"camera:      {result['source']}")
    print(f"opened in:   {result['open_s']:.2f} s, first frame after {result['first_frame_s']:.2f} s")
    print(f"resolution:  {result['width']} x {result['height']} ({result['channels']} channels)")
    print(
        f"frame rate:  {result['fps']:.1f} fps measured over {result['seconds']:.1f} s "
        f"({result['frames']} frames read, {result['frames_skipped']} skipped by the grabber)"
    )
    print(f"frame age:   p50 {age['p50']:.0f} ms, p99 {age['p99']:.0f} ms, max {age['max']:.0f} ms at read")
    return 0
