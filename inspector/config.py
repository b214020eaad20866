"""One line's configuration: pydantic models with `extra="forbid"`, validated once at start-up.

A line is one YAML file (see `edge/` for examples). Every section has defaults, so an empty file is a valid
line: the synthetic source, the shipped reference model, the embedded broker and the dashboard on loopback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from inspector.types import Decision, Thresholds

__all__ = [
    "CameraConfig",
    "DashboardConfig",
    "LineConfig",
    "ModelConfig",
    "MqttConfig",
    "PipelineConfig",
    "RecipeConfig",
    "StoreConfig",
    "SyntheticConfig",
    "TlsConfig",
    "TriggerConfig",
    "UserConfig",
]

DEFAULT_MODEL = Path(__file__).resolve().parent.parent / "models" / "deeppcb-v8n-320.onnx"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SyntheticConfig(_Section):
    seed: int = 0
    defect_rate: float = Field(0.3, ge=0.0, le=1.0, description="share of parts with at least one defect")
    size: int = Field(640, ge=64, description="square scan size in pixels")


class CameraConfig(_Section):
    id: str = Field("cam0", pattern=r"^[A-Za-z0-9_.-]+$", description="camera name, used in MQTT topics")
    source: Literal["synthetic", "folder", "opencv"] = "synthetic"
    uri: str = Field("", description="folder path; or USB index, RTSP/HTTP URL or video file for opencv")
    loop: bool = Field(False, description="folder / video file: start again at the end")
    realtime: bool = Field(False, description="video file: pace frames at the file's own fps")
    fps: float | None = Field(None, gt=0, description="pace any source at this many frames (parts) a second")
    reconnect_initial_s: float = Field(0.5, gt=0)
    reconnect_max_s: float = Field(10.0, gt=0)
    synthetic: SyntheticConfig = SyntheticConfig()

    @model_validator(mode="after")
    def _uri_when_needed(self) -> CameraConfig:
        if self.source in {"folder", "opencv"} and not self.uri:
            raise ValueError(f"camera.uri is required when camera.source is {self.source!r}")
        return self


class TriggerConfig(_Section):
    mode: Literal["free-run", "triggered"] = "free-run"
    max_pending: int = Field(
        64, ge=1, description="triggers waiting for a frame before the oldest fails safe"
    )


class ModelConfig(_Section):
    path: Path = DEFAULT_MODEL
    providers: list[Literal["cpu", "cuda", "tensorrt", "openvino"]] = ["cpu"]
    threads: int = Field(0, ge=0, description="intra-op threads per session; 0 lets onnxruntime choose")
    sessions: int = Field(1, ge=1, description="parallel inference sessions (throughput mode)")
    conf: float = Field(0.25, ge=0.0, le=1.0, description="detector score floor before the decision rules")
    iou: float = Field(0.7, gt=0.0, le=1.0, description="NMS IoU threshold")
    max_det: int = Field(300, ge=1)
    # Fallbacks for a model without Ultralytics metadata.
    names: dict[int, str] | None = None
    imgsz: tuple[int, int] | None = None
    stride: int | None = None


class PipelineConfig(_Section):
    mode: Literal["throughput", "latency"] = "latency"
    queue_size: int = Field(8, ge=1, description="frames waiting for inference before the oldest fails safe")
    max_batch: int = Field(4, ge=1, description="largest batch of waiting parts in one run (throughput mode)")
    gate_ms: float | None = Field(
        2000.0, gt=0, description="capture to reject gate, in ms: a part not decided by then fails safe"
    )
    failsafe_decision: Decision = Decision.REJECT
    drain_timeout_s: float = Field(10.0, gt=0)


class TlsConfig(_Section):
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    insecure: bool = Field(False, description="skip host name checks (commissioning only)")


class MqttConfig(_Section):
    enabled: bool = True
    url: str | None = Field(
        None, description="mqtt://host:port or mqtts://host:port; none starts the embedded broker on loopback"
    )
    line: str = Field("line1", pattern=r"^[A-Za-z0-9_.-]+$")
    prefix: str = Field("inspector", pattern=r"^[A-Za-z0-9_./-]+$")
    protocol: Literal["auto", "5", "3.1.1"] = "auto"
    qos: Literal[0, 1, 2] = 1
    keepalive_s: int = Field(5, ge=1)
    heartbeat_s: float = Field(1.0, gt=0)
    client_id: str | None = None
    username: str | None = None
    password: SecretStr | None = None
    tls: TlsConfig | None = None
    offline_queue: int = Field(10000, ge=1, description="verdicts kept while the broker is away")


class UserConfig(_Section):
    password_hash: str = Field(description="output of `inspector hash-password` (pbkdf2_sha256)")
    role: Literal["viewer", "editor"] = "viewer"


class DashboardConfig(_Section):
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    login_to_view: bool = False
    users: dict[str, UserConfig] = Field(default_factory=dict)


class StoreConfig(_Section):
    enabled: bool = True
    path: Path = Path("var/inspector.db")
    images_dir: Path = Path("var/images")
    quota_mb: float = Field(500.0, gt=0)
    retention_days: float = Field(30.0, gt=0)
    pass_sample_rate: float = Field(
        0.01, ge=0.0, le=1.0, description="share of passed parts whose image is kept"
    )


class RecipeConfig(_Section):
    """A product: the model and thresholds to inspect it with. `cmd/recipe` switches between them."""

    model: ModelConfig = ModelConfig()
    thresholds: Thresholds = Thresholds()


class LineConfig(_Section):
    camera: CameraConfig = CameraConfig()
    trigger: TriggerConfig = TriggerConfig()
    model: ModelConfig = ModelConfig()
    thresholds: Thresholds = Thresholds()
    pipeline: PipelineConfig = PipelineConfig()
    mqtt: MqttConfig = MqttConfig()
    dashboard: DashboardConfig = DashboardConfig()
    store: StoreConfig = StoreConfig()
    recipes: dict[str, RecipeConfig] = Field(
        default_factory=dict,
        description="named products; `model` and `thresholds` above are recipe 'default'",
    )
    recipe: str = Field("default", description="the recipe active at start")

    @model_validator(mode="after")
    def _recipe_exists(self) -> LineConfig:
        if self.recipe != "default" and self.recipe not in self.recipes:
            raise ValueError(f"recipe {self.recipe!r} is not defined under recipes")
        return self
