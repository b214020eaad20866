"""The GenICam source against Aravis' GigE Vision camera simulator (`arv-fake-gv-camera-0.8`, Debian
`aravis-tools`) on a loopback address of its own: free-run frames through the line, one frame per software trigger,
a lost camera seen and reopened.

Needs PyGObject (`PyGObject<3.51`, the dev extra) and Debian's `gir1.2-aravis-0.8` and `aravis-tools`;
`scripts/test` installs them. Hardware trigger is not tested here: the simulator has no trigger input.
"""

from __future__ import annotations

import fcntl
import shutil
import subprocess
import time
from collections.abc import Iterator

import pytest

from inspector.config import CameraConfig, GenicamConfig, PipelineConfig, TriggerConfig
from inspector.genicam import GenicamSource, aravis
from inspector.pipeline import Pipeline, Recipe
from inspector.sources import Paced, open_source
from inspector.thresholds import ThresholdsHolder
from inspector.types import SourceError, Thresholds
from tests.test_pipeline import CollectingSink, ScriptedDetector, wait_for

FAKE = "arv-fake-gv-camera-0.8"


ADDRESS = "127.0.0.1"  # the simulator needs an interface's own address; loopback has only this one
LOCK = "/tmp/inspector-test-fake-gv-camera.lock"  # one simulator at a time per machine: it binds GVCP port 3956


class FakeCamera:
    """The simulator as a process on `address`."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        exe = shutil.which(FAKE)
        assert exe, f"{FAKE} not found: apt install aravis-tools (scripts/test does)"
        self.process = subprocess.Popen(
            [exe, "-i", self.address, "-s", "TEST01"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        from gi.repository import GLib

        deadline = time.monotonic() + 20
        while True:  # up once it answers GVCP
            try:
                aravis().Camera.new(self.address)
                return
            except GLib.Error:
                if self.process.poll() is not None:
                    out = self.process.stdout.read().decode(errors="replace") if self.process.stdout else ""
                    pytest.fail(f"{FAKE} exited on {self.address}: {out.strip()}")
                assert time.monotonic() < deadline, f"{FAKE} did not come up on {self.address}"
                time.sleep(0.2)

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(10)
            self.process = None


@pytest.fixture
def fake_camera() -> Iterator[FakeCamera]:
    with open(LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another test process's simulator holds the port: wait for it
        camera = FakeCamera(ADDRESS)
        camera.start()
        try:
            yield camera
        finally:
            camera.kill()


def _pipeline(source, sink: CollectingSink, triggered: bool = False) -> Pipeline:
    recipe = Recipe("default", [ScriptedDetector()], ThresholdsHolder(Thresholds()))
    return Pipeline(
        source,
        {"default": recipe},
        sinks=[sink],
        config=PipelineConfig(gate_ms=3000),
        trigger=TriggerConfig(mode="triggered" if triggered else "free-run"),
        reconnect=(0.2, 1.0),
    )


def test_free_run_frames_reach_the_line_newest_first(fake_camera: FakeCamera) -> None:
    camera = CameraConfig(
        source="genicam", uri=fake_camera.address, fps=5, genicam=GenicamConfig(frame_rate=25, pixel_format="Mono8")
    )
    source = open_source(camera)
    assert isinstance(source, Paced)  # a grabber inside, paced at the part rate
    sink = CollectingSink()
    pipeline = _pipeline(source, sink)
    pipeline.start()
    try:
        wait_for(lambda: len(sink.verdicts) >= 8, timeout=30)
    finally:
        assert pipeline.stop(timeout=15)
    stats = pipeline.stats()
    assert stats["camera"]["connected"] is False and stats["camera"]["lost"] == 0
    assert source.stats()["frames_skipped"] > 8  # 25 fps camera, 5 parts a second: the surplus skipped, not queued
    assert all(not v.failsafe for v in sink.verdicts[:8])


def test_a_software_trigger_per_part_gives_one_frame_per_part(fake_camera: FakeCamera) -> None:
    source = GenicamSource(fake_camera.address, GenicamConfig(trigger="software"))
    sink = CollectingSink()
    pipeline = _pipeline(source, sink, triggered=True)
    pipeline.start()
    try:
        wait_for(lambda: pipeline.stats()["camera"]["connected"], timeout=20)
        time.sleep(0.5)
        idle = pipeline.stats()["ledger"]["frames_idle"]
        assert idle == 0  # a camera waiting for triggers sends nothing
        for part_id in range(100, 106):
            pipeline.trigger(part_id)
            time.sleep(0.3)
        wait_for(lambda: len(sink.verdicts) == 6, timeout=20)
    finally:
        assert pipeline.stop(timeout=15)
    assert sorted(v.part_id for v in sink.verdicts) == list(range(100, 106))
    assert [v.failsafe for v in sink.verdicts] == [False] * 6  # each part got its own frame, in time
    assert pipeline.stats()["ledger"]["frames_idle"] == 0  # and no frame came without a trigger


def test_a_lost_camera_is_seen_and_reopened(fake_camera: FakeCamera) -> None:
    camera = CameraConfig(source="genicam", uri=fake_camera.address, fps=5, stall_timeout_s=1.0)
    sink = CollectingSink()
    pipeline = _pipeline(open_source(camera), sink)
    pipeline.start()
    try:
        wait_for(lambda: len(sink.verdicts) >= 3, timeout=30)
        fake_camera.kill()
        t_kill = time.monotonic()
        wait_for(lambda: pipeline.stats()["camera"]["lost"] >= 1, timeout=10)
        assert time.monotonic() - t_kill < 4.0
        stats = pipeline.stats()
        assert stats["camera"]["connected"] is False and stats["ready"] is False
        assert [a for a in stats["alarms"] if a["name"] == "camera"]
        fake_camera.start()
        before = len(sink.verdicts)
        wait_for(lambda: pipeline.stats()["camera"]["reconnects"] >= 1, timeout=30)
        wait_for(lambda: len(sink.verdicts) >= before + 3, timeout=30)
        assert pipeline.stats()["camera"]["connected"] is True
    finally:
        assert pipeline.stop(timeout=15)


def test_a_camera_that_is_not_there_is_a_clear_error() -> None:
    source = GenicamSource("127.254.254.253")
    with pytest.raises(SourceError, match=r"cannot open genicam 127\.254\.254\.253"):
        source.open()
