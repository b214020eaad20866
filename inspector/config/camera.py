"""Where frames come from: the camera section (synthetic, folder, OpenCV, GenICam sources)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from inspector.config.section import Section

__all__ = ["CameraConfig", "GenicamConfig", "SyntheticConfig"]


class SyntheticConfig(Section):
    seed: int = 0
    defect_rate: float = Field(0.3, ge=0.0, le=1.0, description="share of parts with at least one defect")
    size: int = Field(640, ge=64, description="square scan size in pixels")
    board_seed: int | None = Field(
        None,
        description="one product: every part is the board drawn from this seed, and its defect-free render is the "
        "golden reference (`inspector sim folder --board-seed K` writes it as reference.png); none: each part its "
        "own board",
    )
    jitter: bool = Field(False, description="place each part with realistic jitter: shift, small rotation, light drift")


class GenicamConfig(Section):
    """A GenICam camera (GigE Vision / USB3 Vision) through Aravis; see docs/cameras.md."""

    trigger: Literal["off", "software", "hardware"] = Field(
        "off",
        description="off: free-run (newest frame only); software: one frame per PLC trigger (needs trigger.mode "
        "'triggered'); hardware: the camera's trigger line makes each frame, one part each (free-run parts)",
    )
    trigger_line: str = Field("Line0", min_length=1, description="hardware trigger: the camera's TriggerSource")
    trigger_activation: str = Field("RisingEdge", min_length=1, description="hardware trigger: TriggerActivation")
    frame_rate: float | None = Field(None, gt=0, description="free-run: the camera's AcquisitionFrameRate")
    exposure_us: float | None = Field(None, gt=0, description="ExposureTime in microseconds (None: as set)")
    gain_db: float | None = Field(None, ge=0, description="Gain in dB (None: as set)")
    pixel_format: str | None = Field(None, description="e.g. Mono8, BayerRG8, RGB8 (None: as set)")
    buffers: int = Field(4, ge=2, le=64, description="stream buffers allocated")
    packet_size: int | None = Field(None, ge=576, le=16384, description="GigE Vision packet size (None: negotiated)")
    frame_timeout_s: float = Field(1.0, gt=0, description="software trigger: a frame not there in this long is lost")


class CameraConfig(Section):
    id: str = Field("cam0", pattern=r"^[A-Za-z0-9_.-]+$", description="camera name, used in MQTT topics")
    source: Literal["synthetic", "folder", "opencv", "genicam"] = "synthetic"
    uri: str = Field(
        "",
        description="folder path; for opencv a USB index ('0'), a device path (/dev/video0, /dev/v4l/by-id/...), "
        "an RTSP/HTTP URL or a video file; for genicam the camera's id, serial number or IP address ('' = the "
        "first one found). A folder may carry ground truth: a truth.json manifest (as `inspector sim folder` "
        "writes) or good/ and bad/ (also ok/, ng/) subfolders",
    )
    loop: bool = Field(False, description="folder / video file: start again at the end")
    realtime: bool = Field(False, description="video file: pace frames at the file's own fps")
    fps: float | None = Field(None, gt=0, description="pace any source at this many frames (parts) a second")
    reconnect_initial_s: float = Field(0.5, gt=0, description="first wait before reopening a lost camera")
    reconnect_max_s: float = Field(10.0, gt=0, description="longest wait between reopen attempts (back-off cap)")
    open_timeout_s: float = Field(5.0, gt=0, description="opencv streams: give up connecting after this long")
    read_timeout_s: float = Field(5.0, gt=0, description="opencv streams: a frame not read in this long is lost")
    stall_timeout_s: float = Field(
        2.0, gt=0, description="free-run cameras: no new frame for this long and the camera is declared lost"
    )
    synthetic: SyntheticConfig = SyntheticConfig()
    genicam: GenicamConfig = GenicamConfig()

    @model_validator(mode="after")
    def _uri_when_needed(self) -> CameraConfig:
        if self.source in {"folder", "opencv"} and not self.uri:
            raise ValueError(f"camera.uri is required when camera.source is {self.source!r}")
        return self
