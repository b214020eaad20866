"""One line's configuration: pydantic models with `extra="forbid"`, validated once at start-up.

A line is one YAML file (see `edge/` for examples). Every section has defaults, so an empty file is a valid
line: the synthetic source, the shipped reference model, the embedded broker and the dashboard on loopback.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from inspector.redact import redact_text
from inspector.resources import find_model
from inspector.types import Decision, Thresholds

__all__ = [
    "ENV_PREFIX",
    "CameraConfig",
    "ClassStyle",
    "ConfigError",
    "ConfigIssue",
    "DashboardConfig",
    "LineConfig",
    "LoginLimitsConfig",
    "ModelConfig",
    "MqttConfig",
    "OpcuaConfig",
    "OpcuaUserConfig",
    "PartGeometry",
    "PipelineConfig",
    "RecipeConfig",
    "ReferenceConfig",
    "SparkplugConfig",
    "StoreConfig",
    "SyntheticConfig",
    "TlsConfig",
    "TriggerConfig",
    "UserConfig",
    "check_files",
    "load_config",
]

DEFAULT_MODEL = find_model()  # the shipped reference model, found on inspector.resources' search path


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SyntheticConfig(_Section):
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


class GenicamConfig(_Section):
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


class CameraConfig(_Section):
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


class TriggerConfig(_Section):
    mode: Literal["free-run", "triggered"] = "free-run"
    max_pending: int = Field(64, ge=1, description="triggers waiting for a frame before the oldest fails safe")


class ModelConfig(_Section):
    path: Path = DEFAULT_MODEL
    fallback: Path | None = Field(
        None,
        description="model to run when `path` fails its self-test on this host (e.g. the fp32 file of an int8 "
        "model); it is self-tested too, and running on it raises an alarm. None: a failing model stops the start",
    )
    providers: list[Literal["cpu", "cuda", "tensorrt", "openvino"]] = ["cpu"]
    threads: int = Field(
        0, ge=0, description="intra-op threads per session; 0: auto (latency: all cores, throughput: 1)"
    )
    sessions: int = Field(
        0, ge=0, description="parallel inference sessions; 0: auto (latency: 1, throughput: one per core)"
    )
    spinning: bool = Field(
        False,
        description="let onnxruntime's threads busy-wait between operators (its own default): about 20 % more "
        "frames/s from a multi-thread session on the 2-core box, but a p99 latency several ms longer, because the "
        "spinning threads hold the cores the pipeline's own threads need (bench/pipeline-results.md)",
    )
    conf: float = Field(0.25, ge=0.0, le=1.0, description="detector score floor before the decision rules")
    iou: float = Field(0.7, gt=0.0, le=1.0, description="NMS IoU threshold")
    max_det: int = Field(300, ge=1)
    # Fallbacks for a model without Ultralytics metadata.
    names: dict[int, str] | None = None
    imgsz: tuple[int, int] | None = None
    stride: int | None = None


class PipelineConfig(_Section):
    """How parts flow: the speed trade-off, the buffer, the reject gate's deadline and the fail-safe."""

    mode: Literal["throughput", "latency"] = Field(
        "latency",
        description="latency: one session on all cores, one part at a time (lowest capture-to-decision time); "
        "throughput: parallel single-thread sessions, waiting parts batched (most parts per second)",
    )
    queue_size: int = Field(8, ge=1, description="frames waiting for inference before the oldest fails safe")
    max_batch: int = Field(
        1,
        ge=1,
        description="largest batch of waiting parts in one run (throughput mode); batches did not help the "
        "parallel single-thread sessions on the 2-core CPU box (bench/pipeline-results.md), they may on a GPU",
    )
    gate_ms: float | None = Field(
        2000.0, gt=0, description="capture to reject gate, in ms: a part not decided by then fails safe"
    )
    margin_ms: float = Field(
        20.0,
        ge=0,
        description="answer this long before the gate deadline (time to publish); the watchdog fails "
        "an undecided part safe then",
    )
    failsafe_decision: Decision = Field(Decision.REJECT, description="decision for an uninspected part")
    drain_timeout_s: float = Field(10.0, gt=0, description="on stop: longest wait for parts in flight")
    dispatch_queue_size: int = Field(
        256, ge=1, description="verdicts waiting for the sinks; when full, inference waits (nothing is dropped)"
    )
    keep_images: bool = Field(True, description="pass each frame's image to the sinks on its verdict (the store)")
    preload_recipes: bool = Field(
        True,
        description="load every recipe's model at start, so that a changeover (cmd/recipe, the dashboard) loads "
        "no model and takes milliseconds; false: a recipe loads on its first switch (seconds, at the cost of memory "
        "saved)",
    )


class TlsConfig(_Section):
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    insecure: bool = Field(False, description="skip host name checks (commissioning only)")


# Sparkplug group, edge node, device and host ids: one MQTT topic level, no wildcards (spec: no '+', '/', '#').
_SPARKPLUG_ID = r"^[A-Za-z0-9_.-]{1,64}$"


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


class SparkplugConfig(_Section):
    """A Sparkplug B 3.0 edge node beside the plain MQTT contract (docs/plant.md): the line is the edge node, the
    camera a device. Off by default."""

    enabled: bool = False
    url: str | None = Field(
        None,
        description="broker (mqtt:// or mqtts://); none: the `mqtt` section's broker, with its credentials and TLS",
    )
    group_id: str = Field("inspector", pattern=_SPARKPLUG_ID, description="Sparkplug group id (topic level 2)")
    edge_node_id: str | None = Field(
        None, pattern=_SPARKPLUG_ID, description="edge node id; none: `mqtt.line` (one inspector process per node)"
    )
    primary_host_id: str | None = Field(
        None,
        pattern=_SPARKPLUG_ID,
        description="the SCADA's host id: birth only while `spBv1.0/STATE/<id>` says online; none: birth at once",
    )
    min_period_s: float = Field(
        1.0, ge=0.0, description="report by exception: changed status metrics at most this often (parts: at once)"
    )
    keepalive_s: int = Field(5, ge=1, description="MQTT keep-alive; the broker sends NDEATH ~1.5x this after a hang")
    client_id: str | None = None
    username: str | None = Field(None, description="with `url` only (otherwise the `mqtt` section's)")
    password: SecretStr | None = None
    tls: TlsConfig | None = None

    @model_validator(mode="after")
    def _credentials_need_url(self) -> SparkplugConfig:
        if self.url is None and (self.username is not None or self.password is not None or self.tls is not None):
            raise ValueError("sparkplug.username/password/tls apply to sparkplug.url only; set it or drop them")
        return self


class UserConfig(_Section):
    password_hash: str = Field(description="output of `inspector hash-password` (pbkdf2_sha256)")
    role: Literal["viewer", "editor"] = "viewer"


class LoginLimitsConfig(_Section):
    """Limits on failed dashboard logins (`inspector.api.login_guard`): back-off and lockout per account, a cap per
    client address, and the one-at-a-time password hasher, so that login traffic never takes the line's CPU."""

    account_failures: int = Field(
        5, ge=1, description="failed logins of one account within account_window_s that lock it for lockout_s"
    )
    account_window_s: float = Field(900.0, gt=0, description="how long an account's failed login is remembered")
    lockout_s: float = Field(
        900.0, gt=0, description="how long a locked account stays locked, unless an editor lifts the lock first"
    )
    backoff_initial_s: float = Field(
        1.0,
        ge=0,
        description="an account's first failure is free; after the second its next try waits this long, and the "
        "wait doubles with each further failure (up to backoff_max_s)",
    )
    address_failures: int = Field(
        20, ge=1, description="failed logins from one client address within address_window_s that block it"
    )
    address_window_s: float = Field(
        60.0,
        gt=0,
        description="the window of address_failures, and an address's first block; each block within "
        "backoff_max_s of the last one doubles (up to backoff_max_s)",
    )
    backoff_max_s: float = Field(900.0, gt=0, description="longest back-off wait or address block")
    hash_queue: int = Field(
        4,
        ge=0,
        description="logins waiting for the password hasher, which checks one at a time; more are answered 503 at once",
    )
    refusal_delay_s: float = Field(
        1.0,
        ge=0,
        description="hold each refused answer (429, 503) this long, at most its Retry-After, so that a client "
        "looping on refusals makes about one request a second per connection; 0: answer at once",
    )
    max_tracked: int = Field(
        10000, ge=1, description="accounts and addresses remembered each (bounded memory; the oldest go first)"
    )


class DashboardConfig(_Section):
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    login_to_view: bool = False
    secure_cookies: bool = Field(
        False,
        description="mark the session cookie Secure (sent over HTTPS only): set it when the dashboard is served "
        "behind a TLS proxy; the page cannot log in over plain HTTP then",
    )
    users: dict[str, UserConfig] = Field(default_factory=dict)
    logins: LoginLimitsConfig = LoginLimitsConfig()


class StoreConfig(_Section):
    enabled: bool = True
    path: Path = Path("var/inspector.db")
    images_dir: Path = Path("var/images")
    quota_mb: float = Field(500.0, gt=0)
    retention_days: float = Field(30.0, gt=0)
    pass_sample_rate: float = Field(0.01, ge=0.0, le=1.0, description="share of passed parts whose image is kept")


class ClassStyle(_Section):
    """How the dashboard shows one defect class of a recipe: its name (as the model's metadata has it) and colour."""

    name: str = Field(min_length=1)
    colour: str | None = Field(None, pattern=r"^#[0-9A-Fa-f]{6}$", description="#rrggbb; none: the palette's")


class PartGeometry(_Section):
    """The part as the camera sees it, for the dashboard and the integrator (the model does not read it)."""

    shape: Literal["rectangle", "round", "square", "other"] = "rectangle"
    width_mm: float | None = Field(None, gt=0)
    height_mm: float | None = Field(None, gt=0)
    image_px: tuple[int, int] | None = Field(None, description="(width, height) of the camera image in pixels")


class ReferenceConfig(_Section):
    """A product's golden reference (issue 15): each frame is registered to it before the detector, which gets the
    frame and the registered reference together (`inspector.reference`); a reference model needs one. A part that
    does not register fails safe (`unregistered`). See `inspector.registration` for the motion models and limits."""

    image: Path | None = Field(
        None,
        description="defect-free part as this camera sees it (e.g. `inspector sim folder --board-seed` writes one)",
    )
    motion: Literal["rigid", "similarity", "affine"] = Field(
        "rigid", description="how a part may move against the reference: rigid (fixture, conveyor), +scale, affine"
    )
    min_correlation: float = Field(0.9, ge=-1.0, le=1.0, description="registered frame vs reference, to accept")
    max_shift_px: float = Field(40.0, gt=0, description="largest shift of a part that still registers")
    max_angle_deg: float = Field(5.0, gt=0, description="largest rotation of a part that still registers")
    max_scale_change: float = Field(0.05, ge=0, description="largest |scale - 1| (similarity, affine)")


class OpcuaUserConfig(_Section):
    """An OPC UA account: a password (PBKDF2 hash, as `inspector hash-password` makes) or an X.509 user certificate."""

    password_hash: str | None = Field(None, description="output of `inspector hash-password` (pbkdf2_sha256)")
    certificate: Path | None = Field(None, description="the user's X.509 certificate (DER or PEM) instead")
    role: Literal["viewer", "operator"] = Field(
        "viewer", description="viewer: browse, read, subscribe; operator: also call methods (jobs, recipes)"
    )

    @model_validator(mode="after")
    def _one_credential(self) -> OpcuaUserConfig:
        if (self.password_hash is None) == (self.certificate is None):
            raise ValueError("give exactly one of password_hash and certificate")
        return self


OpcuaSecurity = Literal[
    "None",
    "Basic256Sha256_Sign",
    "Basic256Sha256_SignAndEncrypt",
    "Aes128Sha256RsaOaep_Sign",
    "Aes128Sha256RsaOaep_SignAndEncrypt",
    "Aes256Sha256RsaPss_Sign",
    "Aes256Sha256RsaPss_SignAndEncrypt",
]


class OpcuaConfig(_Section):
    """The OPC UA server (OPC 40100-1 Machine Vision style VisionSystem, docs/plant.md); off by default."""

    enabled: bool = False
    host: str = Field("127.0.0.1", description="address to listen on (0.0.0.0: every interface)")
    port: int = Field(4840, ge=0, le=65535, description="TCP port (0: any free port)")
    path: str = Field("", pattern=r"^(/[A-Za-z0-9_.-]+)*$", description="endpoint path, e.g. /inspector")
    anonymous: Literal["off", "viewer", "operator"] = Field("off", description="what a client without login may do")
    users: dict[str, OpcuaUserConfig] = Field(default_factory=dict)
    security: list[OpcuaSecurity] = Field(
        default_factory=lambda: ["None", "Basic256Sha256_SignAndEncrypt"],
        min_length=1,
        description="endpoint security policies; passwords are encrypted with the server certificate even on None",
    )
    certificate: Path | None = Field(None, description="server certificate (DER or PEM); none: a self-signed one")
    private_key: Path | None = Field(None, description="its private key (PEM)")
    pki_dir: Path = Field(
        Path("var/opcua"),
        description="self-signed server certificate, trusted/ client certificates, rejected/ ones to review",
    )
    trust_all_clients: bool = Field(
        False, description="accept any client application certificate (commissioning only); else trusted/ only"
    )
    results_kept: int = Field(10, ge=1, le=1000, description="last results under ResultManagement/Results")
    queue_size: int = Field(1000, ge=1, description="results waiting for the OPC UA thread before the oldest drops")
    status_period_s: float = Field(0.2, gt=0, description="how often the state machine follows the line")

    @model_validator(mode="after")
    def _usable(self) -> OpcuaConfig:
        if (self.certificate is None) != (self.private_key is None):
            raise ValueError("opcua.certificate and opcua.private_key go together: give both or neither")
        if self.enabled and self.anonymous == "off" and not self.users:
            raise ValueError("opcua.users is empty and opcua.anonymous is off: no client could log in")
        return self


class RecipeConfig(_Section):
    """A product: the model and thresholds to inspect it with. `cmd/recipe` switches between them.

    A recipe package (`recipes/<name>/recipe.yaml`, `inspector.recipes`) is one of these on disk, with the rest of
    what a changeover switches: class names and colours, golden reference, part geometry and gate budget.
    """

    model: ModelConfig = ModelConfig()
    thresholds: Thresholds = Thresholds()
    description: str = ""
    classes: list[ClassStyle] | None = Field(
        None, description="class id order: names (must match the model's metadata) and dashboard colours"
    )
    reference: ReferenceConfig = ReferenceConfig()
    part: PartGeometry | None = None
    gate_ms: float | None = Field(None, gt=0, description="this product's gate budget; none: pipeline.gate_ms")
    synthetic: Literal["pcb", "mooncake"] | None = Field(
        None, description="the synthetic line that makes this product (the demo's digital twin)"
    )
    package: Path | None = Field(None, description="the package folder it was read from (set by the loader)")


class LineConfig(_Section):
    camera: CameraConfig = CameraConfig()
    trigger: TriggerConfig = TriggerConfig()
    model: ModelConfig = ModelConfig()
    thresholds: Thresholds = Thresholds()
    reference: ReferenceConfig = ReferenceConfig()
    pipeline: PipelineConfig = PipelineConfig()
    mqtt: MqttConfig = MqttConfig()
    sparkplug: SparkplugConfig = SparkplugConfig()
    dashboard: DashboardConfig = DashboardConfig()
    store: StoreConfig = StoreConfig()
    opcua: OpcuaConfig = OpcuaConfig()
    recipes: dict[str, RecipeConfig] = Field(
        default_factory=dict,
        description="named products; `model`, `thresholds` and `reference` above are recipe 'default'",
    )
    recipe_packages: list[str] = Field(
        default_factory=list,
        description="recipe packages this line may run: a folder holding recipe.yaml, or a package name found as "
        "recipes/<name>/ on the data search path; each becomes a recipe named by its package",
    )
    recipe: str = Field("default", description="the recipe active at start")

    @field_validator("recipe_packages")
    @classmethod
    def _add_packages(cls, refs: list[str], info: ValidationInfo) -> list[str]:
        """Each package becomes a recipe (`recipes` is validated before this field, so it is in `info.data`)."""
        if refs and "recipes" in info.data:
            from inspector.recipes import add_packages  # reads the package files; imports this module

            add_packages(info.data["recipes"], refs)
        return refs

    @model_validator(mode="after")
    def _software_trigger_needs_triggers(self) -> LineConfig:
        camera = self.camera
        if camera.source == "genicam" and camera.genicam.trigger == "software" and self.trigger.mode != "triggered":
            raise ValueError(
                "camera.genicam.trigger 'software' takes one frame per PLC trigger: set trigger.mode 'triggered'"
            )
        return self

    @model_validator(mode="after")
    def _recipe_exists(self) -> LineConfig:
        if self.recipe != "default" and self.recipe not in self.recipes:
            raise ValueError(f"recipe {self.recipe!r} is not defined under recipes or recipe_packages")
        return self


# ------------------------------------------------------------------------------------------------------ loading
ENV_PREFIX = "INSPECTOR_"


@dataclass(frozen=True, slots=True)
class ConfigIssue:
    """One thing wrong with a config: the field path (`camera.uri`), the YAML line (1-based) or the environment
    variable it came from, and what is wrong. A warning is reported but does not make the config unusable (a USB
    camera that is unplugged now: the line retries until it appears, so a start-up check must not refuse it)."""

    path: str
    message: str
    line: int | None = None
    env: str | None = None
    warning: bool = False

    def __str__(self) -> str:
        where = f" (line {self.line})" if self.line else f" (from ${self.env})" if self.env else ""
        return f"{self.path or '<top>'}{where}: {self.message}"


class ConfigError(ValueError):
    """A line config that cannot be used. `issues` lists each problem; the message has one per line."""

    def __init__(self, source: str, issues: list[ConfigIssue]) -> None:
        self.source = source
        self.issues = issues
        lines = "\n".join(f"  {issue}" for issue in issues)
        super().__init__(f"{source}: {len(issues)} problem{'s' if len(issues) != 1 else ''}\n{lines}")


def _key_lines(node: yaml.Node, prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], int]:
    """Map each field path in a composed YAML tree to the 1-based line where its key (or item) starts."""
    lines: dict[tuple[str, ...], int] = {}
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            path = (*prefix, str(key_node.value))
            lines[path] = key_node.start_mark.line + 1
            lines.update(_key_lines(value_node, path))
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            path = (*prefix, str(i))
            lines[path] = item.start_mark.line + 1
            lines.update(_key_lines(item, path))
    return lines


def _read_yaml(path: Path) -> tuple[dict[str, Any], dict[tuple[str, ...], int]]:
    """The file's mapping and its key lines; raises ConfigError on unreadable or malformed YAML."""
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(source, [ConfigIssue("", f"cannot read the file: {exc.strerror or exc}")]) from exc
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(source, [ConfigIssue("", f"not valid YAML: {problem}", line)]) from exc
    if data is None:
        return {}, {}
    if not isinstance(data, dict):
        raise ConfigError(source, [ConfigIssue("", f"the top level must be a mapping, not {type(data).__name__}", 1)])
    return data, _key_lines(node) if node is not None else {}


def _apply_env(data: dict[str, Any], env: Mapping[str, str]) -> dict[tuple[str, ...], str]:
    """Apply `INSPECTOR_<SECTION>__<KEY>[__<KEY>...]` overrides to `data` in place; return path -> variable.

    Names match existing keys case-insensitively (so `recipes` names keep their case) and are lower-cased
    otherwise; values are parsed as YAML scalars (`1500` is an int, `true` a bool, `[a, b]` a list).
    A variable without `__` (e.g. `INSPECTOR_CONFIG`) is not an override.
    """
    applied: dict[tuple[str, ...], str] = {}
    for name in sorted(env):
        if not name.startswith(ENV_PREFIX) or "__" not in name[len(ENV_PREFIX) :]:
            continue
        parts = [p for p in name[len(ENV_PREFIX) :].split("__")]
        if any(not p for p in parts):
            continue
        try:
            value = yaml.safe_load(env[name])
        except yaml.YAMLError:
            value = env[name]  # not YAML: take the text as it is
        node: dict[str, Any] = data
        path: list[str] = []
        for i, part in enumerate(parts):
            key = next((k for k in node if isinstance(k, str) and k.lower() == part.lower()), part.lower())
            path.append(key)
            if i == len(parts) - 1:
                node[key] = value
            else:
                child = node.get(key)
                if not isinstance(child, dict):
                    child = {}
                    node[key] = child
                node = child
        applied[tuple(path)] = name
    return applied


def _issues(
    exc: ValidationError, lines: dict[tuple[str, ...], int], env_paths: dict[tuple[str, ...], str]
) -> list[ConfigIssue]:
    """Pydantic's errors as ConfigIssues, each with the line of its deepest field present in the file."""
    env_prefixes: dict[tuple[str, ...], str] = {}
    for env_path, var in env_paths.items():  # an unknown section is reported at its first key: map prefixes too
        for depth in range(len(env_path), 0, -1):
            env_prefixes.setdefault(env_path[:depth], var)
    issues = []
    for err in exc.errors():
        loc = tuple(str(p) for p in err["loc"] if p != "[key]")
        message = err["msg"]
        if err["type"] == "extra_forbidden":
            message = "unknown field (not allowed here)"
        elif (
            "input" in err
            and err["type"] not in {"missing", "value_error"}
            and not isinstance(err["input"], dict | list)
        ):
            message = f"{message} (got {err['input']!r})"
        line = env = None
        for depth in range(len(loc), 0, -1):
            prefix = loc[:depth]
            if prefix in env_paths:  # the value came from the environment, even where the file has one too
                env = env_paths[prefix]
                break
            if prefix in lines:
                line = lines[prefix]
                break
            if prefix in env_prefixes:
                env = env_prefixes[prefix]
                break
        # A message may quote the value: a URI's password never goes into it.
        issues.append(ConfigIssue(".".join(loc), redact_text(message.removeprefix("Value error, ")), line, env))
    return issues


def load_config(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> LineConfig:
    """Read a line config: the YAML file at `path` (None: defaults only), then the environment overrides.

    env: the variables to read (default `os.environ`). Relative paths in the file are used as written (relative
    to the working directory). Raises `ConfigError` naming each bad field, with its YAML line or variable.
    """
    data: dict[str, Any] = {}
    lines: dict[tuple[str, ...], int] = {}
    source = "<defaults>"
    if path is not None:
        source = str(path)
        data, lines = _read_yaml(Path(path))
    env_paths = _apply_env(data, os.environ if env is None else env)
    try:
        return LineConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(source, _issues(exc, lines, env_paths)) from None


def check_files(config: LineConfig) -> list[ConfigIssue]:
    """Problems pydantic cannot see: model files, reference images and image folders that do not exist."""
    issues = []
    model_sections = [("model", config.model)] + [
        (f"recipes.{name}.model", recipe.model) for name, recipe in config.recipes.items()
    ]
    models = [(f"{where}.path", m.path) for where, m in model_sections] + [
        (f"{where}.fallback", m.fallback) for where, m in model_sections if m.fallback is not None
    ]
    for field, model_path in models:
        if not Path(model_path).is_file():
            issues.append(ConfigIssue(field, f"model file not found: {model_path}"))
    references = [("reference", config.reference)] + [
        (f"recipes.{n}.reference", r.reference) for n, r in config.recipes.items()
    ]
    for where, reference in references:
        if reference.image is not None and not Path(reference.image).is_file():
            issues.append(ConfigIssue(f"{where}.image", f"reference image not found: {reference.image}"))
    cam = config.camera
    if cam.source == "folder" and not Path(cam.uri).is_dir():
        issues.append(ConfigIssue("camera.uri", f"image folder not found: {cam.uri}"))
    if cam.source == "opencv" and cam.uri.startswith("/dev/") and not Path(cam.uri).exists():
        issues.append(
            ConfigIssue(
                "camera.uri", f"camera device not found: {cam.uri} (the line retries until it appears)", warning=True
            )
        )
    return issues
