"""Frame sources: folder, memory, OpenCV (file, HTTP stream, refused URL), pacing, back-off, `open_source`."""

from __future__ import annotations

import functools
import http.server
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from inspector.config import CameraConfig, PipelineConfig
from inspector.grabber import Grabber
from inspector.pipeline import Pipeline
from inspector.sources import Backoff, FolderSource, MemorySource, OpenCvSource, Paced, load_frames, open_source
from inspector.types import FrameSource, SourceError
from tests.test_pipeline import CollectingSink, ScriptedDetector, recipe_of


def write_video(path: Path, n: int, size: tuple[int, int] = (64, 48), fps: float = 25.0) -> Path:
    """An MJPG .avi of `n` frames; frame i is uniformly grey with value 20 * i (to tell frames apart)."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, size)
    for i in range(n):
        writer.write(np.full((size[1], size[0], 3), (20 * i) % 256, np.uint8))
    writer.release()
    return path


def read_all(source: FrameSource, limit: int = 1000) -> list[np.ndarray]:
    out = []
    while len(out) < limit:
        item = source.read()
        if item is None:
            break
        out.append(item[0])
    return out


@pytest.fixture
def http_dir(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A local HTTP server over `tmp_path`: (base URL, folder)."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(tmp_path)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", tmp_path
    server.shutdown()
    server.server_close()


# ------------------------------------------------------------------------------------------------ folder
def test_folder_is_sorted_converts_grey_and_skips_unreadable(tmp_path: Path) -> None:
    cv2.imwrite(str(tmp_path / "b.png"), np.full((8, 8), 50, np.uint8))  # grey
    cv2.imwrite(str(tmp_path / "a.jpg"), np.full((8, 8, 3), 100, np.uint8))
    (tmp_path / "c.png").write_bytes(b"not an image")
    (tmp_path / "notes.txt").write_text("ignored")
    source = FolderSource(tmp_path)
    source.open()
    frames = read_all(source)
    assert [f.shape for f in frames] == [(8, 8, 3), (8, 8, 3)]
    assert abs(int(frames[0].mean()) - 100) <= 2 and int(frames[1].mean()) == 50
    assert source.skipped == 1 and source.live is False


def test_folder_loops_when_asked(tmp_path: Path) -> None:
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"{i}.png"), np.full((4, 4, 3), i * 10, np.uint8))
    source = FolderSource(tmp_path, loop=True)
    source.open()
    assert [int(f.mean()) for f in read_all(source, limit=7)] == [0, 10, 20, 0, 10, 20, 0]


def test_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="not found"):
        FolderSource(tmp_path / "missing").open()
    with pytest.raises(SourceError, match="no images"):
        FolderSource(tmp_path).open()
    (tmp_path / "bad.png").write_bytes(b"x")
    looping = FolderSource(tmp_path, loop=True)
    looping.open()
    with pytest.raises(SourceError, match="no readable image"):
        looping.read()


# ------------------------------------------------------------------------------------------------ memory
def test_memory_cycles_without_copies_and_ends_after_count() -> None:
    images = [np.zeros((2, 2, 3), np.uint8), np.ones((2, 2, 3), np.uint8)]
    source = MemorySource(images, count=5, truths=["a", "b"])
    source.open()
    items = []
    while (item := source.read()) is not None:
        items.append(item)
    assert [t for _, t in items] == ["a", "b", "a", "b", "a"]
    assert items[2][0] is images[0]
    with pytest.raises(ValueError):
        MemorySource([])


# ------------------------------------------------------------------------------------------------ opencv
def test_video_file_reads_every_frame_then_ends(tmp_path: Path) -> None:
    source = OpenCvSource(str(write_video(tmp_path / "v.avi", 6)))
    source.open()
    frames = read_all(source)
    assert len(frames) == 6 and frames[0].shape == (48, 64, 3)
    assert [round(f.mean() / 20) for f in frames] == [0, 1, 2, 3, 4, 5]
    assert source.kind == "file" and source.live is False
    source.close()


def test_video_file_loops(tmp_path: Path) -> None:
    source = OpenCvSource(str(write_video(tmp_path / "v.avi", 3)), loop=True)
    source.open()
    assert [round(f.mean() / 20) for f in read_all(source, limit=7)] == [0, 1, 2, 0, 1, 2, 0]


def test_video_file_in_real_time_is_paced_at_its_fps(tmp_path: Path) -> None:
    source = OpenCvSource(str(write_video(tmp_path / "v.avi", 6, fps=50.0)), realtime=True)
    source.open()
    start = time.monotonic()
    assert len(read_all(source)) == 6
    assert time.monotonic() - start >= 5 / 50 * 0.9  # 6 frames at 50 fps span at least 5 periods
    assert source.live is True


def test_missing_file_and_refused_url_raise_source_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="not found"):
        OpenCvSource(str(tmp_path / "none.mp4")).open()
    with pytest.raises(SourceError, match="cannot open"):
        OpenCvSource("http://127.0.0.1:1/stream.mjpg", open_timeout_s=1).open()


def test_http_stream_that_ends_is_a_lost_camera(http_dir: tuple[str, Path]) -> None:
    base, folder = http_dir
    write_video(folder / "cam.avi", 4)
    source = OpenCvSource(f"{base}/cam.avi", open_timeout_s=2, read_timeout_s=2)
    source.open()
    assert source.kind == "stream" and source.live is True
    assert len([source.read() for _ in range(4)]) == 4
    with pytest.raises(SourceError, match="lost"):
        source.read()
    source.close()


def test_lost_http_camera_is_reopened_and_counted_by_the_pipeline(http_dir: tuple[str, Path]) -> None:
    """A camera that dies mid-run (here: an HTTP stream that ends) is reopened with back-off and counted, and an
    URL that refuses (the file is gone) raises an alarm without crashing anything."""

    base, folder = http_dir
    video = write_video(folder / "cam.avi", 5)
    sink = CollectingSink()
    source = OpenCvSource(f"{base}/cam.avi", open_timeout_s=2, read_timeout_s=2)
    pipeline = Pipeline(
        source,
        {"default": recipe_of([ScriptedDetector()])},
        sinks=[sink],
        reconnect=(0.02, 0.05),
        config=PipelineConfig(gate_ms=None, queue_size=64),
    )
    pipeline.start()
    deadline = time.monotonic() + 20
    while pipeline.stats()["camera"]["reconnects"] < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    video.unlink()  # the camera now refuses (404)
    while pipeline.stats()["camera"]["open_failures"] < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    stats = pipeline.stats()
    assert stats["camera"]["reconnects"] >= 2 and stats["camera"]["lost"] >= 3
    assert stats["camera"]["open_failures"] >= 2 and stats["camera"]["connected"] is False
    assert [a["name"] for a in stats["alarms"]] == ["camera"]
    assert pipeline.stop(timeout=10)
    ledger = pipeline.stats()["ledger"]
    assert ledger["seen"] >= 15 and ledger["seen"] == ledger["decided"] == len(sink.verdicts)


# ------------------------------------------------------------------------------------------------ pacing
def test_paced_source_keeps_a_fixed_schedule() -> None:
    source = Paced(MemorySource([np.zeros((2, 2, 3), np.uint8)], count=6), fps=100)
    source.open()
    start = time.monotonic()
    assert len(read_all(source)) == 6
    assert time.monotonic() - start >= 5 / 100 * 0.9
    assert source.live is True and "100 fps" in source.description
    with pytest.raises(ValueError):
        Paced(source, 0)


def test_paced_read_first_holds_each_frame_until_its_slot() -> None:
    """read_first (a generator such as the synthetic line): read, then wait for the slot that opened at open()."""
    reads: list[float] = []

    class Clocked(MemorySource):
        def read(self) -> tuple[np.ndarray, object] | None:
            reads.append(time.monotonic())
            return super().read()

    source = Paced(Clocked([np.zeros((2, 2, 3), np.uint8)], count=3), fps=20, read_first=True)
    source.open()
    start = time.monotonic()
    returned = []
    while source.read() is not None:
        returned.append(time.monotonic())
    assert len(returned) == 3 and len(reads) == 4  # the fourth read ended the stream
    assert returned[-1] - start >= 2 / 20 * 0.9  # slots at 0, 0.05, 0.1 s after open
    assert all(r <= t for r, t in zip(reads, returned, strict=False))


def test_backoff_doubles_up_to_the_cap_and_resets() -> None:
    b = Backoff(0.5, 3.0)
    assert [b.next_delay() for _ in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    b.reset()
    assert b.next_delay() == 0.5


# ------------------------------------------------------------------------------------------------ factory
def test_open_source_builds_each_kind(tmp_path: Path) -> None:
    folder = open_source(CameraConfig(source="folder", uri=str(tmp_path), loop=True))
    assert isinstance(folder, FolderSource) and folder.loop
    paced = open_source(CameraConfig(source="opencv", uri="rtsp://10.0.0.9/s", fps=5))
    assert isinstance(paced, Paced) and isinstance(paced.source, Grabber)  # a live camera: newest frame only
    assert isinstance(paced.source.make_source(), OpenCvSource) and paced.source.make_source().kind == "stream"
    usb = open_source(CameraConfig(source="opencv", uri="0"))
    assert isinstance(usb, Grabber) and usb.stall_timeout_s == 2.0 and usb.make_source().kind == "usb"
    video = open_source(CameraConfig(source="opencv", uri=str(tmp_path / "v.avi")))
    assert isinstance(video, OpenCvSource) and video.kind == "file"  # read as fast as it decodes: no grabber
    synthetic = open_source(CameraConfig(source="synthetic", fps=10))
    assert isinstance(synthetic, Paced) and synthetic.read_first and isinstance(synthetic, FrameSource)
    assert type(synthetic.source).__name__ == "SyntheticSource"


def test_load_frames_from_folder_and_video(tmp_path: Path) -> None:
    write_video(tmp_path / "v.avi", 5)
    assert len(load_frames(tmp_path / "v.avi")) == 5
    assert len(load_frames(tmp_path / "v.avi", limit=2)) == 2
    images = tmp_path / "imgs"
    images.mkdir()
    cv2.imwrite(str(images / "x.png"), np.zeros((4, 4), np.uint8))
    assert load_frames(images)[0].shape == (4, 4, 3)
    with pytest.raises(SourceError):
        load_frames(tmp_path / "empty.avi")
