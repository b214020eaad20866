"""GenICam cameras (GigE Vision, USB3 Vision) through Aravis, the industrial cameras production lines mount.

Aravis is reached through GObject introspection: PyGObject (`PyGObject<3.51` on Debian 12, whose GLib is 2.74)
and the typelib of Debian's `gir1.2-aravis-0.8`; `arv-fake-gv-camera-0.8` (Debian `aravis-tools`) is a GigE
Vision camera simulator the tests run on loopback. Imported lazily: a line without a GenICam camera never needs it.

Trigger (`camera.genicam.trigger`):
- off: the camera free-runs (at `frame_rate` where set); read through `inspector.grabber.Grabber`, newest frame
  only, a stall is a loss.
- software: one frame per part: `Pipeline.trigger(part_id)` calls `trigger()`, which fires the camera's
  `TriggerSoftware`; the frame that follows is the part's (`trigger.mode: triggered`).
- hardware: the camera's trigger input (`trigger_line`, `trigger_activation`) takes each frame, one part each,
  numbered by the inspector (`trigger.mode: free-run`). Implemented, not tested: the simulator has no trigger line.
A camera that waits for a trigger sends no frames, so its liveness is checked by reading a register while idle;
a control channel Aravis reports lost, or a register read that fails, is a lost camera (`SourceError`).

Capture time: the buffer's system timestamp (taken by Aravis when the frame's first packet arrived), mapped to the
monotonic clock.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import cv2
import numpy as np

from inspector.config import CameraConfig, GenicamConfig
from inspector.grabber import Grabber
from inspector.types import FrameSource, SourceError

__all__ = ["GenicamSource", "aravis", "open_genicam"]

log = logging.getLogger(__name__)

_POLL_S = 0.2  # longest wait for a buffer before checking for loss
_LIVENESS_S = 1.0  # while idle (waiting for a trigger), read a register this often


def aravis() -> Any:
    """The Aravis 0.8 module, or a `SourceError` that says what to install."""
    try:
        import gi

        gi.require_version("Aravis", "0.8")
        from gi.repository import Aravis
    except (ImportError, ValueError) as exc:
        raise SourceError(
            "GenICam cameras need Aravis through PyGObject: apt install gir1.2-aravis-0.8, and pip install "
            f"'PyGObject<3.51' (Debian 12) into the inspector's environment ({exc})"
        ) from exc
    return Aravis


# GenICam pixel format name -> how to make BGR of it (a cv2 colour conversion, or None for mono / BGR as is).
_BAYER = {
    "BayerRG8": cv2.COLOR_BayerRGGB2BGR,
    "BayerBG8": cv2.COLOR_BayerBGGR2BGR,
    "BayerGR8": cv2.COLOR_BayerGRBG2BGR,
    "BayerGB8": cv2.COLOR_BayerGBRG2BGR,
}
_MONO_HIGH = {"Mono10": 2, "Mono12": 4, "Mono14": 6, "Mono16": 8}  # bits to shift right to make 8 bits


def to_bgr(data: bytes, width: int, height: int, pixel_format: str) -> np.ndarray:
    """(height, width, 3) uint8 BGR from one buffer's image data; raises `SourceError` for formats not handled."""
    raw = np.frombuffer(data, np.uint8)
    if pixel_format == "Mono8":
        return cv2.cvtColor(raw[: width * height].reshape(height, width), cv2.COLOR_GRAY2BGR)
    if pixel_format in _MONO_HIGH:
        wide = raw[: width * height * 2].view("<u2").reshape(height, width) >> _MONO_HIGH[pixel_format]
        return cv2.cvtColor(wide.astype(np.uint8), cv2.COLOR_GRAY2BGR)
    if pixel_format in _BAYER:
        return cv2.cvtColor(raw[: width * height].reshape(height, width), _BAYER[pixel_format])
    if pixel_format in ("RGB8", "RGB8Packed", "BGR8", "BGR8Packed"):
        image = raw[: width * height * 3].reshape(height, width, 3)
        return cv2.cvtColor(image, cv2.COLOR_RGB2BGR) if pixel_format.startswith("RGB") else image.copy()
    raise SourceError(
        f"GenICam pixel format {pixel_format!r} is not handled; set camera.genicam.pixel_format to Mono8, "
        "BayerRG8 (or another Bayer 8-bit), RGB8 or BGR8"
    )


class GenicamSource:
    """One GenICam camera (see the module docstring). device: Aravis id, serial number or IP address; "" = the
    first camera found. `read()` returns `(image, None)`; `last_capture_ns` is the frame's capture time."""

    def __init__(self, device: str, config: GenicamConfig | None = None) -> None:
        self.device = device
        self.config = config or GenicamConfig()
        self.live = True
        self.description = f"genicam {device or '(first camera)'}"
        self.last_capture_ns: int | None = None
        self.incomplete = 0  # buffers that arrived damaged (lost packets) and were skipped
        self._camera: Any = None
        self._stream: Any = None
        self._pixel_format = ""
        self._lost = threading.Event()
        self._triggered_ns = 0  # when the oldest trigger still waiting for its frame was fired (0: none)
        self._lock = threading.Lock()

    # -- open / close ---------------------------------------------------------------------------------------------
    def open(self) -> None:
        self.close()
        arv = aravis()
        from gi.repository import GLib

        try:
            camera = arv.Camera.new(self.device or None)
        except GLib.Error as exc:
            raise SourceError(f"cannot open {self.description}: {exc.message}") from exc
        try:
            self._configure(arv, camera)
            stream = camera.create_stream(None, None)
            size = camera.get_payload()
            for _ in range(self.config.buffers):
                stream.push_buffer(arv.Buffer.new_allocate(size))
            self._lost.clear()
            camera.get_device().connect("control-lost", lambda _device: self._lost.set())
            camera.start_acquisition()
        except GLib.Error as exc:
            raise SourceError(f"cannot set up {self.description}: {exc.message}") from exc
        self._camera, self._stream = camera, stream
        self._pixel_format = camera.get_pixel_format_as_string()
        self._triggered_ns = 0
        name = f"{camera.get_vendor_name()} {camera.get_model_name()} {camera.get_device_serial_number()}"
        self.description = f"genicam {self.device or name} ({name})"
        log.info("opened %s, trigger %s", self.description, self.config.trigger)

    def _configure(self, arv: Any, camera: Any) -> None:
        cfg = self.config
        camera.set_acquisition_mode(arv.AcquisitionMode.CONTINUOUS)
        if cfg.pixel_format:
            camera.set_pixel_format_from_string(cfg.pixel_format)
        if cfg.exposure_us is not None:
            camera.set_exposure_time(cfg.exposure_us)
        if cfg.gain_db is not None:
            camera.set_gain(cfg.gain_db)
        if cfg.packet_size is not None and camera.is_gv_device():
            camera.gv_set_packet_size(cfg.packet_size)
        if cfg.trigger == "off":
            camera.clear_triggers()
            if cfg.frame_rate is not None:
                camera.set_frame_rate(cfg.frame_rate)
        elif cfg.trigger == "software":
            camera.set_trigger("Software")
        else:
            camera.set_trigger(cfg.trigger_line)
            camera.get_device().set_string_feature_value("TriggerActivation", cfg.trigger_activation)

    def close(self) -> None:
        camera, self._camera, self._stream = self._camera, None, None
        if camera is None:
            return
        try:
            camera.stop_acquisition()
        except Exception as exc:  # a camera already gone cannot stop: nothing to undo
            log.debug("stopping %s: %s", self.description, exc)

    # -- frames ---------------------------------------------------------------------------------------------------
    def trigger(self) -> None:
        """Software trigger: the camera takes one frame now (raises `SourceError` when it cannot)."""
        camera = self._camera
        if camera is None:
            raise SourceError(f"{self.description} is not open")
        from gi.repository import GLib

        with self._lock:
            if not self._triggered_ns:
                self._triggered_ns = time.monotonic_ns()
        try:
            camera.software_trigger()
        except GLib.Error as exc:
            raise SourceError(f"software trigger on {self.description} failed: {exc.message}") from exc

    def read(self) -> tuple[np.ndarray, Any] | None:
        stream = self._stream
        if stream is None:
            raise SourceError(f"{self.description} is not open")
        idle_since = time.monotonic()
        while True:
            buffer = stream.timeout_pop_buffer(int(_POLL_S * 1e6))
            if self._lost.is_set():
                raise SourceError(f"lost {self.description}: control channel lost")
            if buffer is None:
                self._check_alive(idle_since)
                if time.monotonic() - idle_since >= _LIVENESS_S:
                    idle_since = time.monotonic()
                continue
            try:
                image = self._image(buffer)
            finally:
                stream.push_buffer(buffer)
            if image is not None:
                with self._lock:
                    self._triggered_ns = 0
                return image, None

    def _image(self, buffer: Any) -> np.ndarray | None:
        arv = aravis()
        if buffer.get_status() != arv.BufferStatus.SUCCESS:
            self.incomplete += 1
            return None
        width, height = buffer.get_image_width(), buffer.get_image_height()
        image = to_bgr(buffer.get_image_data(), width, height, self._pixel_format)
        now = time.monotonic_ns()
        system_ns = buffer.get_system_timestamp()  # wall clock when the frame began to arrive
        captured = system_ns - (time.time_ns() - now) if system_ns > 0 else now
        self.last_capture_ns = min(captured, now)
        return image

    def _check_alive(self, idle_since: float) -> None:
        """No frame in the last poll: fail when a software trigger went unanswered, or, idle, when the camera no
        longer answers a register read."""
        with self._lock:
            triggered = self._triggered_ns
        if triggered and (time.monotonic_ns() - triggered) / 1e9 > self.config.frame_timeout_s:
            raise SourceError(f"lost {self.description}: no frame {self.config.frame_timeout_s:g} s after a trigger")
        if time.monotonic() - idle_since < _LIVENESS_S or self._camera is None:
            return
        from gi.repository import GLib

        try:
            self._camera.get_device().get_integer_feature_value("Width")
        except GLib.Error as exc:
            raise SourceError(f"lost {self.description}: it does not answer ({exc.message})") from exc


def open_genicam(camera: CameraConfig) -> FrameSource:
    """The source for a `camera.source: genicam` config: free-run through a `Grabber` (newest frame only, a stall
    is a loss), triggered cameras directly (every frame is a part's)."""
    aravis()  # fail at build time, with what to install, rather than on every reopen
    if camera.genicam.trigger == "off":
        return Grabber(
            lambda: GenicamSource(camera.uri, camera.genicam), stall_timeout_s=camera.stall_timeout_s, name=camera.id
        )
    return GenicamSource(camera.uri, camera.genicam)
