"""A real RTSP camera end to end: a GStreamer RTSP server streams H.264 at 25 fps with each frame's number drawn into
it (tests/rtsp_server.py); the line inspects 3 parts a second with a real ONNX model and publishes on a real
Mosquitto.

- Newest frame only: the inspected frames' numbers (read back from the stored images) keep up with wall time for
  20 s, no growing lag; the grabber counts the skipped frames; p99 frame age at decision stays within one frame
  interval plus p99 inference time (plus a margin for this shared 2-core machine).
- The server is killed: `camera` lost on `events` within 3 s (and the retained `camera` topic says so), no model
  verdict from a frame older than the loss after it was declared; the server comes back: `camera` back, inspection
  goes on with fresh frames.

3 parts a second rather than the issue's 5: on a loaded 2-core box the model alone can take 80-280 ms a part,
and at 5 a second parts would queue for the CPU, which is not what this test is about.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from jsonschema import Draft202012Validator

from inspector.broker import free_port
from inspector.config import CameraConfig, PipelineConfig
from inspector.detector import OnnxDetector
from inspector.pipeline import Pipeline, Recipe
from inspector.plc import PlcLink, load_schema
from inspector.sources import open_source
from inspector.thresholds import ThresholdsHolder
from inspector.types import Thresholds, Verdict
from tests.mqtt_helpers import Recorder, mosquitto, mqtt_config
from tests.rtsp_server import decode_counter, frame_time

HERE = Path(__file__).resolve().parent
FPS = 25.0
PARTS_PER_S = 3.0
STREAM_S = 20.0
MARGIN_MS = 150.0  # a shared, loaded 2-core machine: scheduling delays on top of inference


class RtspServer:
    """tests/rtsp_server.py as a process on `port`, numbering frames from wall time `epoch`."""

    def __init__(self, port: int, epoch: float) -> None:
        self.port, self.epoch = port, epoch
        self.url = f"rtsp://127.0.0.1:{port}/stream"
        self.process: subprocess.Popen[str] | None = None

    def start(self) -> None:
        cmd = [sys.executable, str(HERE / "rtsp_server.py"), "--port", str(self.port), "--fps", str(FPS)]
        self.process = subprocess.Popen(
            [*cmd, "--epoch", repr(self.epoch)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()  # "ready rtsp://..." once it serves (or its error)
        assert line.startswith("ready"), f"RTSP server did not start: {line}{self.process.stdout.read()[-2000:]}"

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(10)
            self.process = None


class FrameNumbers:
    """A sink that reads each inspected frame's number back from its image, with the wall time it was decided."""

    name = "frames"

    def __init__(self, wall_minus_mono_s: float) -> None:
        self.offset = wall_minus_mono_s
        self.rows: list[tuple[Verdict, int | None, float]] = []  # verdict, frame number, decided (wall)
        self.lock = threading.Lock()

    def handle(self, verdict: Verdict) -> None:
        number = decode_counter(verdict.image) if verdict.image is not None else None
        decided = verdict.timings.decided_ns / 1e9 + self.offset
        with self.lock:
            self.rows.append((verdict, number, decided))

    def close(self) -> None:
        pass

    def inspected(self) -> list[tuple[Verdict, int, float]]:
        with self.lock:
            return [(v, n, d) for v, n, d in self.rows if not v.failsafe and n is not None]


@pytest.fixture
def server() -> Iterator[RtspServer]:
    rtsp = RtspServer(free_port(), epoch=time.time())
    rtsp.start()
    try:
        yield rtsp
    finally:
        rtsp.kill()


def test_rtsp_stream_newest_frame_honest_age_and_loss(server: RtspServer, yolov8n_onnx: Path, tmp_path: Path) -> None:
    detector = OnnxDetector(str(yolov8n_onnx), threads=1, spinning=False)
    recipe = Recipe("default", [detector], ThresholdsHolder(Thresholds()))
    camera = CameraConfig(id="cam0", source="opencv", uri=server.url, fps=PARTS_PER_S, stall_timeout_s=2.0)
    source = open_source(camera)
    offset = time.time() - time.monotonic()
    frames = FrameNumbers(offset)
    config = PipelineConfig(mode="latency", gate_ms=1000, margin_ms=50, keep_images=True)
    with mosquitto(tmp_path) as broker, Recorder(broker.url, ["inspector/line1/cam0/#"]) as recorder:
        pipeline = Pipeline(source, {"default": recipe}, config=config, sinks=[frames], reconnect=(0.5, 2.0))
        link = PlcLink(mqtt_config(broker.url, line="line1"), "cam0", status=lambda: {"ready": pipeline.ready()})
        pipeline.add_camera_listener(link.publish_camera)
        pipeline.add_sink(link)
        link.start()
        pipeline.start()
        try:
            # 1. Stream 20 s faster than the line inspects.
            assert recorder.wait_for(lambda r: bool(r.on("camera")), 20), "no camera state published"
            t_first = time.time()
            time.sleep(STREAM_S)
            streamed = frames.inspected()
            skipped = pipeline.stats()["camera"]["frames_skipped"]
            inference_p99 = pipeline.stats()["stage_ms"]["inference"]["p99"]

            # 2. Kill the server: the camera is lost, no stale verdicts.
            server.kill()
            t_kill = time.time()
            assert recorder.wait_for(lambda r: any(e["event"] == "camera" for e in r.payloads("events")), 10)
            (lost,) = [m for m in recorder.on("events") if m.json()["event"] == "camera"]
            t_lost = lost.at + offset
            rows_at_loss = len(frames.rows)

            # 3. The server comes back: camera back, fresh verdicts.
            time.sleep(2.0)
            server.start()
            t_back_server = time.time()
            back = recorder.wait_for(lambda r: [e.get("state") for e in r.payloads("events")][-1:] == ["back"], 40)
            assert back, f"no camera back event: {recorder.payloads('events')}"
            deadline = time.monotonic() + 30
            while not [r for r in frames.inspected() if frame_time(r[1], server.epoch, FPS) > t_back_server]:
                assert time.monotonic() < deadline, "no fresh verdict after the camera came back"
                time.sleep(0.2)
        finally:
            pipeline.stop(timeout=20)
            link.stop()
        events = [e for e in recorder.payloads("events") if e["event"] == "camera"]
        states = [m.json() for m in recorder.on("camera")]

    # Newest frame only: frame numbers follow wall time, the lag does not grow.
    assert len(streamed) >= PARTS_PER_S * STREAM_S * 0.6, f"only {len(streamed)} parts inspected in {STREAM_S} s"
    numbers = [n for _, n, _ in streamed]
    assert numbers == sorted(numbers) and len(set(numbers)) == len(numbers)  # forward, never the same frame twice
    lag = np.array([d - frame_time(n, server.epoch, FPS) for _, n, d in streamed if d > t_first])
    early, late = lag[: len(lag) // 3], lag[-len(lag) // 3 :]
    assert float(np.median(late)) - float(np.median(early)) < 0.1, f"lag grows: {early} -> {late}"
    assert skipped >= FPS * STREAM_S * 0.6, f"only {skipped} frames counted skipped"
    # p99 frame age at decision (capture time -> decision, as the line measures it) within one frame interval plus
    # p99 inference; the true age (from the drawn number) adds the encoder's and the network's delay.
    ages_ms = np.array([v.timings.latency_ms() for v, _, _ in streamed])
    bound_ms = 1000.0 / FPS + inference_p99 + MARGIN_MS
    assert float(np.percentile(ages_ms, 99)) < bound_ms, (np.percentile(ages_ms, 99), bound_ms)
    assert float(np.percentile(lag, 99)) * 1000 < bound_ms + 250, np.percentile(lag, 99)

    # Loss: published within 3 s of the kill; no model verdict after it from a frame older than the loss.
    assert t_lost - t_kill < 3.0, f"camera lost published {t_lost - t_kill:.1f} s after the kill"
    assert events[0]["state"] == "lost" and server.url in events[0]["reason"], events[0]
    stale = [
        (n, d - t_lost) for v, n, d in frames.inspected() if d > t_lost and frame_time(n, server.epoch, FPS) < t_kill
    ]
    assert not stale, f"verdicts from frames older than the loss, given after it: {stale}"
    assert rows_at_loss <= len(frames.rows)
    # Back: the retained topic went up -> lost -> up, every payload valid.
    assert [e["state"] for e in events][-1] == "back"
    assert [s["state"] for s in states][:1] == ["up"] and "lost" in [s["state"] for s in states]
    assert states[-1]["state"] == "up" and states[-1]["lost"] >= 1
    for payload in states:
        Draft202012Validator(load_schema("camera")).validate(payload)
    for payload in events:
        Draft202012Validator(load_schema("event")).validate(payload)
