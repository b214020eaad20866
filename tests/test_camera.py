"""Cameras without a network: the grabber (newest frame only, skipped frames, stalls), stream-clock capture times,
USB device paths, the GenICam config rules, the `camera` MQTT payloads and `inspector probe-camera`.

The RTSP stream end to end is tests/test_rtsp.py; the GenICam simulator is tests/test_genicam.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from jsonschema import Draft202012Validator
from pydantic import ValidationError

from inspector.config import CameraConfig, LineConfig, check_files
from inspector.grabber import Grabber, StreamClock
from inspector.plc.contract import camera_payload, event_payload, load_schema
from inspector.sources import OpenCvSource, Paced, open_source
from inspector.types import SourceError

ROOT = Path(__file__).resolve().parent.parent


class Ticking:
    """A live camera double: frame k is a (8, 8, 3) image whose pixels are all k % 256, delivered every `period_s`
    from `open()` on; `stall_after` frames and it hangs (a dead stream whose read never returns) until closed;
    `fail_after` frames and it raises; `end_after` frames and the stream ends (None)."""

    description = "ticking test camera"

    def __init__(
        self, period_s: float = 0.01, *, stall_after: int = -1, fail_after: int = -1, end_after: int = -1
    ) -> None:
        self.period_s = period_s
        self.stall_after, self.fail_after, self.end_after = stall_after, fail_after, end_after
        self.count = 0
        self.release = threading.Event()  # lets a hung read return
        self.closed = threading.Event()
        self.last_capture_ns: int | None = None
        self._next = 0.0

    def open(self) -> None:
        self._next = time.monotonic()

    def read(self) -> tuple[np.ndarray, Any] | None:
        if self.count == self.stall_after:
            self.release.wait(30)  # hangs like a dead socket until the test lets it go
            raise SourceError("hung read gave up")
        if self.count == self.fail_after:
            raise SourceError("cable pulled")
        if self.count == self.end_after:
            return None
        self._next += self.period_s
        time.sleep(max(0.0, self._next - time.monotonic()))
        k = self.count
        self.count += 1
        self.last_capture_ns = time.monotonic_ns() - 5_000_000  # the camera says: captured 5 ms ago
        return np.full((8, 8, 3), k % 256, np.uint8), k

    def close(self) -> None:
        self.closed.set()
        self.release.set()


def test_grabber_returns_the_newest_frame_and_counts_the_skipped_ones() -> None:
    made: list[Ticking] = []

    def make() -> Ticking:
        made.append(Ticking(0.01))
        return made[-1]

    grabber = Grabber(make, stall_timeout_s=2.0)
    grabber.open()
    try:
        taken = []
        for _ in range(5):
            time.sleep(0.1)  # the camera makes ~10 frames meanwhile
            image, truth = grabber.read()  # type: ignore[misc]
            taken.append(truth)
            assert int(image[0, 0, 0]) == truth % 256
            newest = made[-1].count - 1
            assert newest - truth <= 2, f"took frame {truth} while frame {newest} was there"
        stats = grabber.stats()
    finally:
        grabber.close()
    assert taken == sorted(taken) and len(set(taken)) == 5  # never the same frame twice, never backwards
    assert stats["frames_skipped"] >= 30  # about 9 of every 10 frames were replaced before anyone took them
    assert stats["frames_grabbed"] == stats["frames_skipped"] + 5 + (stats["frames_grabbed"] - taken[-1] - 1)


def test_grabber_keeps_the_sources_capture_time_not_the_readers() -> None:
    grabber = Grabber(lambda: Ticking(0.02), stall_timeout_s=2.0)
    grabber.open()
    try:
        grabber.read()
        time.sleep(0.2)  # the frame the reader takes next was captured before this sleep ended, not at read
        grabber.read()
        read_ns = time.monotonic_ns()
        age_ms = (read_ns - grabber.last_capture_ns) / 1e6  # type: ignore[operator]
    finally:
        grabber.close()
    assert 5.0 <= age_ms < 150.0, age_ms  # at least the 5 ms the camera reported; not the 200 ms of the sleep


def test_a_stalled_stream_is_declared_lost_within_the_stall_timeout() -> None:
    source = Ticking(0.01, stall_after=3)
    grabber = Grabber(lambda: source, stall_timeout_s=0.5)
    grabber.open()
    t0 = time.monotonic()
    try:
        with pytest.raises(SourceError, match=r"no frame for 0\.\d s \(stalled\)"):
            while True:
                grabber.read()
        waited = time.monotonic() - t0
    finally:
        grabber.close()
    assert 0.5 <= waited < 2.0
    assert not source.closed.is_set()  # never closed under a read still running on another thread ...
    source.release.set()
    assert source.closed.wait(5)  # ... the grab thread closes it once the read returns


def test_a_failing_or_ending_source_is_reported_after_its_last_frame() -> None:
    failing = Grabber(lambda: Ticking(0.001, fail_after=2), stall_timeout_s=5.0)
    failing.open()
    with pytest.raises(SourceError, match="cable pulled"):
        for _ in range(10):
            failing.read()
    failing.close()

    ending = Grabber(lambda: Ticking(0.001, end_after=1), stall_timeout_s=5.0)
    ending.open()
    time.sleep(0.1)
    assert ending.read() is not None  # its one frame, then the end
    assert ending.read() is None
    ending.close()


def test_each_open_builds_a_fresh_source_so_a_stuck_one_shares_nothing() -> None:
    made: list[Ticking] = []

    def make() -> Ticking:
        made.append(Ticking(0.01, stall_after=2 if len(made) == 1 else -1))  # the first opened one hangs
        return made[-1]

    grabber = Grabber(make, stall_timeout_s=0.3)  # the constructor's probe is made[0]
    grabber.open()
    with pytest.raises(SourceError):
        while True:
            grabber.read()
    grabber.close()
    grabber.open()
    try:
        assert grabber.read() is not None
    finally:
        grabber.close()
    assert len(made) == 3 and made[1] is not made[2]
    made[1].release.set()


def test_paced_grabber_forwards_capture_time_and_stats() -> None:
    paced = Paced(Grabber(lambda: Ticking(0.005), stall_timeout_s=2.0), fps=20)
    paced.open()
    try:
        for _ in range(4):
            paced.read()
        assert paced.last_capture_ns is not None
        assert paced.stats()["frames_skipped"] > 0
    finally:
        paced.close()


def test_stream_clock_dates_a_buffered_frame_back_to_its_stream_time() -> None:
    clock = StreamClock()
    base = 10_000_000_000
    assert clock.capture_ns(0.0, base) == base  # the first frame: nothing to compare with yet
    assert clock.capture_ns(40.0, base + 40_000_000) == base + 40_000_000  # on time
    # A frame that sat 300 ms in a buffer: its stream time says it was captured 300 ms before it arrived.
    assert clock.capture_ns(80.0, base + 380_000_000) == base + 80_000_000
    # Faster than any before: the offset moves, the estimate never goes past the arrival.
    assert clock.capture_ns(120.0, base + 110_000_000) == base + 110_000_000
    assert clock.capture_ns(None, base + 999) == base + 999  # no stream time: the arrival time
    assert clock.capture_ns(5.0, base + 200_000_000) == base + 200_000_000  # went backwards: a new stream


def test_stream_clock_is_settled_once_frames_stop_arriving_in_a_burst() -> None:
    clock = StreamClock()
    base = 10_000_000_000
    for k in range(10):  # a second of frames buffered while connecting, handed over 2 ms apart
        clock.capture_ns(k * 40.0, base + k * 2_000_000)
        assert not clock.settled, k
    for k in range(10, 13):  # then three on the stream's own beat: the live edge
        assert not clock.settled
        clock.capture_ns(k * 40.0, base + 20_000_000 + (k - 9) * 39_000_000)
    assert clock.settled
    stuck = StreamClock()  # a backend that reports no stream time: 0 every time
    assert [stuck.capture_ns(0.0, base + k) for k in range(8)] == [base + k for k in range(8)]
    assert stuck.settled


@pytest.mark.parametrize("uri", ["/dev/video97", "/dev/v4l/by-id/usb-Acme_LineCam_0001-video-index0"])
def test_usb_device_paths_are_cameras_and_a_missing_one_names_the_device(uri: str) -> None:
    source = OpenCvSource(uri)
    assert source.kind == "usb" and source.live
    with pytest.raises(SourceError, match=f"camera device not found: {uri}"):
        source.open()
    camera = CameraConfig(source="opencv", uri=uri)
    assert isinstance(open_source(camera), Grabber)  # a live camera: newest frame only
    issues = check_files(LineConfig(camera=camera))
    assert [str(i) for i in issues if i.path == "camera.uri"] == [
        f"camera.uri: camera device not found: {uri} (the line retries until it appears)"
    ]
    assert all(i.warning for i in issues if i.path == "camera.uri")  # unplugged now is no reason to refuse a start


def test_check_config_warns_about_an_unplugged_camera_and_still_passes(tmp_path: Path) -> None:
    """The systemd unit runs check-config before each start: a camera that is unplugged at that moment is reported,
    but the line starts (it retries the device until it appears)."""
    config = tmp_path / "line.yaml"
    config.write_text("camera:\n  source: opencv\n  uri: /dev/v4l/by-id/unplugged-camera\n")
    done = subprocess.run(
        [sys.executable, "-m", "inspector", "check-config", str(config)], capture_output=True, text=True, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr
    assert "warning: camera.uri: camera device not found: /dev/v4l/by-id/unplugged-camera" in done.stderr
    assert ": OK (camera" in done.stdout


def test_a_missing_usb_device_is_retried_by_the_line_not_taken_for_a_file() -> None:
    from inspector.pipeline import Pipeline, Recipe
    from inspector.thresholds import ThresholdsHolder
    from inspector.types import Thresholds
    from tests.test_pipeline import ScriptedDetector

    device = "/dev/v4l/by-path/pci-0000:00:14.0-usb-0:9:1.0-video-index0"
    source = open_source(CameraConfig(source="opencv", uri=device))
    recipe = Recipe("default", [ScriptedDetector()], ThresholdsHolder(Thresholds()))
    pipeline = Pipeline(source, {"default": recipe}, reconnect=(0.01, 0.02))
    pipeline.start()
    try:
        deadline = time.monotonic() + 10
        while pipeline.stats()["camera"]["open_failures"] < 3:
            assert time.monotonic() < deadline, "the line did not retry the device"
            time.sleep(0.01)
        stats = pipeline.stats()
        assert not pipeline.done and stats["camera"]["connected"] is False
        (alarm,) = [a for a in stats["alarms"] if a["name"] == "camera"]
        assert f"camera device not found: {device}" in alarm["message"]
        assert "video file" not in alarm["message"]
    finally:
        assert pipeline.stop(timeout=10)


def test_genicam_config_rules() -> None:
    cam = CameraConfig(source="genicam", uri="", genicam={"trigger": "software"})
    with pytest.raises(ValidationError, match=r"trigger\.mode 'triggered'"):
        LineConfig(camera=cam)
    assert LineConfig(camera=cam, trigger={"mode": "triggered"}).camera.genicam.trigger == "software"
    with pytest.raises(ValidationError, match="stall_timeout_s"):
        CameraConfig(stall_timeout_s=0)
    assert CameraConfig().stall_timeout_s == 2.0


def test_camera_payloads_match_their_schemas() -> None:
    camera = Draft202012Validator(load_schema("camera"))
    event = Draft202012Validator(load_schema("event"))
    lost = {
        "state": "lost",
        "reason": "no frame for 2.0 s (stalled)",
        "source": "opencv stream rtsp://h/s",
        "since": time.time(),
        "lost": 1,
    }
    back = {**lost, "state": "back", "reason": "back", "down_s": 3.5}
    up = {**lost, "state": "up", "reason": "opened", "lost": 0}
    for change, state in ((lost, "lost"), (back, "up"), (up, "up")):
        payload = camera_payload(change, camera="cam0")
        camera.validate(payload)
        assert payload["state"] == state
    camera_event = {"event": "camera", **{k: back[k] for k in ("state", "reason", "source", "down_s")}}
    event.validate(event_payload(camera_event, seq=1))
    assert not event.is_valid(event_payload({"event": "camera", "state": "lost"}, seq=2))  # no reason


def test_probe_camera_reports_resolution_rate_and_age_or_names_the_missing_device(tmp_path: Path) -> None:
    import cv2

    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 20.0, (64, 48))
    for k in range(60):
        writer.write(np.full((48, 64, 3), k * 4, np.uint8))
    writer.release()
    cmd = [sys.executable, "-m", "inspector", "probe-camera"]
    run = subprocess.run(
        [*cmd, str(video), "--realtime", "--seconds", "1", "--warmup", "0.2", "--json"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=True,
    )
    result = json.loads(run.stdout)
    assert (result["width"], result["height"], result["channels"]) == (64, 48, 3)
    assert 12 <= result["fps"] <= 28  # a 20 fps file played in real time
    assert result["frame_age_ms"]["p99"] >= 0
    missing = subprocess.run([*cmd, "/dev/v4l/by-id/no-such-camera"], capture_output=True, text=True, cwd=ROOT)
    assert missing.returncode == 1
    assert "camera device not found: /dev/v4l/by-id/no-such-camera" in missing.stderr
