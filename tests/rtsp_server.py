"""A small real-time RTSP server for the camera tests: H.264 over RTSP (GStreamer's rtsp-server), frames drawn live.

Each frame carries its number as 16 black/white blocks (`decode_counter` reads them back, H.264 keeps them) and
as text for a human eye. The number is the frame's slot on a wall clock, `round((time.time() - epoch) * fps)`, so a
restarted server goes on counting where wall time is, and a test can tell any frame's age from its pixels alone.

Run as a process (a test kills it to simulate a dead camera):
    python tests/rtsp_server.py --port 8554 --fps 25 --epoch 1700000000.0
prints `ready rtsp://127.0.0.1:8554/stream` once it serves. Needs GStreamer's rtsp-server and x264 through
PyGObject (Debian: gir1.2-gst-rtsp-server-1.0, gstreamer1.0-plugins-{base,good,ugly}).
"""

from __future__ import annotations

import argparse
import sys
import threading
import time

import numpy as np

WIDTH, HEIGHT = 320, 240
BITS = 16
_BLOCK = 40  # two rows of 8 blocks, 40 x 40 px, at the top of the frame


def draw_frame(number: int) -> np.ndarray:
    """A (HEIGHT, WIDTH, 3) uint8 BGR frame showing `number` (mod 2**BITS) as blocks and as text."""
    import cv2

    frame = np.full((HEIGHT, WIDTH, 3), 96, np.uint8)
    for bit in range(BITS):
        row, col = divmod(bit, 8)
        value = 255 if (number >> bit) & 1 else 0
        frame[row * _BLOCK : (row + 1) * _BLOCK, col * _BLOCK : (col + 1) * _BLOCK] = value
    cv2.putText(frame, str(number), (10, 200), cv2.FONT_HERSHEY_SIMPLEX, 1.2, (255, 255, 255), 2)
    return frame


def decode_counter(image: np.ndarray) -> int:
    """The frame number `draw_frame` drew into `image` (any size: the image is scaled to the drawn one)."""
    import cv2

    if image.shape[:2] != (HEIGHT, WIDTH):
        image = cv2.resize(image, (WIDTH, HEIGHT), interpolation=cv2.INTER_AREA)
    gray = image.mean(axis=2) if image.ndim == 3 else image
    number = 0
    for bit in range(BITS):
        row, col = divmod(bit, 8)
        centre = gray[row * _BLOCK + 10 : (row + 1) * _BLOCK - 10, col * _BLOCK + 10 : (col + 1) * _BLOCK - 10]
        if float(centre.mean()) > 128:
            number |= 1 << bit
    return number


def frame_time(number: int, epoch: float, fps: float) -> float:
    """Wall time (time.time()) at which frame `number` was drawn (within the 16-bit wrap of the test's run)."""
    return epoch + number / fps


def serve(port: int, fps: float, epoch: float) -> None:
    import gi

    gi.require_version("Gst", "1.0")
    gi.require_version("GstRtspServer", "1.0")
    from gi.repository import GLib, Gst, GstRtspServer

    Gst.init(None)
    period_ns = int(1e9 / fps)
    launch = (
        f"( appsrc name=src is-live=true format=time "
        f"caps=video/x-raw,format=BGR,width={WIDTH},height={HEIGHT},framerate={round(fps)}/1 "
        "! videoconvert ! video/x-raw,format=I420 "
        f"! x264enc tune=zerolatency speed-preset=ultrafast key-int-max={round(fps)} bitrate=1000 "
        "! rtph264pay name=pay0 pt=96 config-interval=1 )"
    )

    class Feed:
        """Pushes one frame per period into each configured media's appsrc, from a thread of its own."""

        def __init__(self) -> None:
            self.sources: list[object] = []
            self.lock = threading.Lock()

        def configure(self, _factory: object, media: object) -> None:
            appsrc = media.get_element().get_by_name_recurse_up("src")  # type: ignore[attr-defined]
            with self.lock:
                self.sources.append([appsrc, 0])

        def run(self) -> None:
            start = time.monotonic()
            k = 0
            while True:
                k += 1
                time.sleep(max(0.0, start + k / fps - time.monotonic()))
                number = round((time.time() - epoch) * fps) % (1 << BITS)
                data = draw_frame(number).tobytes()
                with self.lock:
                    sources = list(self.sources)
                for entry in sources:
                    appsrc, n = entry
                    buf = Gst.Buffer.new_wrapped(data)
                    buf.pts = n * period_ns
                    buf.duration = period_ns
                    entry[1] = n + 1
                    if appsrc.emit("push-buffer", buf) != Gst.FlowReturn.OK:
                        with self.lock:
                            if entry in self.sources:
                                self.sources.remove(entry)

    feed = Feed()
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(port))
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(launch)
    factory.set_shared(True)
    factory.connect("media-configure", feed.configure)
    server.get_mount_points().add_factory("/stream", factory)
    if server.attach(None) == 0:
        raise SystemExit(f"cannot serve RTSP on port {port}")
    threading.Thread(target=feed.run, daemon=True).start()
    print(f"ready rtsp://127.0.0.1:{port}/stream", flush=True)
    GLib.MainLoop().run()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--fps", type=float, default=25.0)
    parser.add_argument("--epoch", type=float, default=None, help="wall time of frame 0 (default: now)")
    args = parser.parse_args()
    serve(args.port, args.fps, time.time() if args.epoch is None else args.epoch)


if __name__ == "__main__":
    sys.exit(main())
